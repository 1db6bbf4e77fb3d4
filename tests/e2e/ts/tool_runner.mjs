// The TypeScript SDK's real tool runner against the gateway: prints what it sent and what it got.
//   node tool_runner.mjs BASE_URL API_KEY stream|plain    (NODE_PATH: the SDK's node_modules)
import { createRequire } from 'node:module';

const require = createRequire(process.env.NODE_PATH + '/');
const { default: Anthropic } = require('@anthropic-ai/sdk');
const { betaTool } = require('@anthropic-ai/sdk/helpers/beta/json-schema');

const [baseURL, apiKey, mode] = process.argv.slice(2);
const sent = [];
const client = new Anthropic({
  baseURL, apiKey, maxRetries: 0,
  fetch: async (url, init) => {
    if (String(url).endsWith('/v1/messages')) sent.push(JSON.parse(init.body));
    return fetch(url, init);
  },
});
const getWeather = betaTool({
  name: 'get_weather',
  description: 'Current weather for a city.',
  inputSchema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  run: async ({ city }) => `sunny in ${city}`,
});
const runner = client.beta.messages.toolRunner({
  model: 'claude-sonnet-5', max_tokens: 200, system: 'You answer weather questions.',
  messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [getWeather], stream: mode === 'stream',
});
const replies = [];
for await (const item of runner) {
  const message = mode === 'stream' ? await item.finalMessage() : item;
  replies.push({ id: message.id, stop_reason: message.stop_reason, content: message.content });
}
console.log(JSON.stringify({ sent, replies }));
