"""Persistence: call records, aggregates, audit, health and inspector history,
registrations and routes."""
