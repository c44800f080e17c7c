import assert from 'node:assert/strict';
import { test } from 'node:test';
import { forwardRequestHeaders, forwardResponseHeaders, hostOf, requestHasBody } from './headers.js';

const plain = { proto: 'http' as const, trustForwarded: false, via: undefined };

function pairs(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) out.push(`${raw[i]}: ${raw[i + 1]}`);
  return out;
}

test('request headers lose hop-by-hop fields, including those Connection nominates (RFC 9110 §7.6.1)', () => {
  const raw = ['Host', 'app.localhost', 'Connection', 'keep-alive, X-Secret', 'X-Secret', '1', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Proxy-Connection', 'keep-alive', 'Upgrade', 'h2c', 'Expect', '100-continue', 'Transfer-Encoding', 'chunked', 'Accept', '*/*'];
  assert.deepEqual(pairs(forwardRequestHeaders(raw, undefined, plain, '::ffff:10.0.0.7')), [
    'Host: app.localhost',
    'Transfer-Encoding: chunked',
    'Accept: */*',
    'X-Forwarded-For: 10.0.0.7',
    'X-Forwarded-Proto: http',
    'X-Forwarded-Host: app.localhost',
  ]);
});

test('X-Forwarded-* from the client are replaced unless trusted, then extended', () => {
  const raw = ['Host', 'app.localhost', 'X-Forwarded-For', '1.2.3.4', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'app.example.com'];
  assert.deepEqual(pairs(forwardRequestHeaders(raw, undefined, plain, '127.0.0.1')).slice(1), [
    'X-Forwarded-For: 127.0.0.1',
    'X-Forwarded-Proto: http',
    'X-Forwarded-Host: app.localhost',
  ]);
  assert.deepEqual(pairs(forwardRequestHeaders(raw, undefined, { proto: 'http', trustForwarded: true, via: 'flick' }, '127.0.0.1')).slice(1), [
    'X-Forwarded-For: 1.2.3.4, 127.0.0.1',
    'X-Forwarded-Proto: https',
    'X-Forwarded-Host: app.example.com',
    'Via: 1.1 flick',
  ]);
});

test('an upgrade request keeps its handshake fields', () => {
  const raw = ['Host', 'a.localhost', 'Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k'];
  assert.deepEqual(pairs(forwardRequestHeaders(raw, 'websocket', plain, undefined)), [
    'Host: a.localhost',
    'Sec-WebSocket-Key: k',
    'X-Forwarded-For: unknown',
    'X-Forwarded-Proto: http',
    'X-Forwarded-Host: a.localhost',
    'Connection: Upgrade',
    'Upgrade: websocket',
  ]);
});

test('response headers lose hop-by-hop fields but keep their framing', () => {
  const raw = ['Content-Type', 'text/plain', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'Content-Length', '3'];
  assert.deepEqual(pairs(forwardResponseHeaders(raw, 'flick')), ['Content-Type: text/plain', 'Transfer-Encoding: chunked', 'Content-Length: 3', 'Via: 1.1 flick']);
});

test('hostOf and requestHasBody read raw headers', () => {
  assert.equal(hostOf(['Accept', '*/*', 'HOST', 'A.localhost']), 'A.localhost');
  assert.equal(hostOf(['Accept', '*/*']), undefined);
  assert.equal(requestHasBody(['Host', 'a']), false);
  assert.equal(requestHasBody(['Content-Length', '0']), false);
  assert.equal(requestHasBody(['content-length', '12']), true);
  assert.equal(requestHasBody(['Transfer-Encoding', 'chunked']), true);
});
