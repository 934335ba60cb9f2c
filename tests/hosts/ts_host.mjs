// A host on the TypeScript SDK (v2 client), for tests/test_ts_host.py.
//   node ts_host.mjs <client package dir> <gateway MCP URL> <token> <scenario>
// Prints one JSON object: what the scenario saw.
import { pathToFileURL } from 'node:url';

const [pkg, url, token, scenario] = process.argv.slice(2);
const { Client, StreamableHTTPClientTransport } = await import(pathToFileURL(`${pkg}/dist/index.mjs`).href);

async function connect(era, label, extra = {}) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: label, version: '1' }, {
    versionNegotiation: { mode: era },
    capabilities: { sampling: {}, elicitation: { form: {} }, ...extra } });
  client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: {
    name: label, check: true, color: 'red', email: 'a@b.c', integer: 1, number: 1,
    untitledSingleSelectEnum: 'option1', titledSingleSelectEnum: 'value1', legacyTitledEnum: 'opt1',
    untitledMultipleSelectEnum: ['option1'], titledMultipleSelectEnum: ['value1'] } }));
  client.setRequestHandler('sampling/createMessage', async () => ({
    model: label, role: 'assistant', content: { type: 'text', text: `sampled by ${label}` } }));
  client.onerror = () => {};
  await client.connect(transport);
  return client;
}

const text = (result) => result.content.map((c) => c.text ?? c.type).join(' ');

if (scenario === 'asks') {
  // Three calls that ask, in flight at once, from one 2026-07-28 host.
  const client = await connect('auto', 'ts-host');
  const calls = [
    ['everything_trigger-elicitation-request', {}],
    ['everything_trigger-sampling-request', { prompt: 'hi', maxTokens: 5 }],
    ['everything_trigger-elicitation-request', {}],
  ].map(([name, args]) => client.callTool({ name, arguments: args })
    .then(text, (e) => `error: ${e.message}`));
  console.log(JSON.stringify({ era: client.getProtocolEra(), results: await Promise.all(calls) }));
} else if (scenario === 'aborts') {
  // A host that gives up on calls (AbortSignal once the first progress came), then calls on.
  const client = await connect('legacy', 'ts-host');
  const aborted = [];
  for (let i = 0; i < 3; i++) {
    const ac = new AbortController();
    const call = client.callTool(
      { name: 'everything_trigger-long-running-operation', arguments: { duration: 30, steps: 300 } },
      { signal: ac.signal, onprogress: () => ac.abort('the host gave up') });
    aborted.push(await call.then(() => 'finished', (e) => String(e.message ?? e)));
  }
  const after = await client.callTool({ name: 'everything_echo', arguments: { message: 'still there' } });
  console.log(JSON.stringify({ aborted, after: text(after) }));
} else if (scenario === 'roots') {
  // A handshake-era host changes its roots and says so (per_client server-everything
  // asks roots/list again, outside any call, and keeps the answer for get-roots-list).
  const client = await connect('legacy', 'ts-host', { roots: { listChanged: true } });
  let roots = [{ uri: 'file:///work/old', name: 'old' }];
  let asked = 0;
  let again = () => {};
  client.setRequestHandler('roots/list', async () => { asked++; again(); return { roots }; });
  const list = async () => text(await client.callTool({ name: 'everything_get-roots-list', arguments: {} }));
  const before = await list();
  roots = [{ uri: 'file:///work/new', name: 'new' }];
  const told = new Promise((resolve) => { again = resolve; });
  await client.sendRootsListChanged();
  // Asked again: the notification reached the host's own session (a guard, not a wait:
  // not asked within 30 s, the scenario reports what the server kept).
  await Promise.race([told, new Promise((resolve) => setTimeout(resolve, 30000).unref())]);
  // The answer travels on to the server: each call is one more round trip (bounded).
  let after = await list();
  for (let i = 0; i < 50 && asked > 1 && !after.includes('file:///work/new'); i++) after = await list();
  console.log(JSON.stringify({ before, after, asked }));
}
process.exit(0);
