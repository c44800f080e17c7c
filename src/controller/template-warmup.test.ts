import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { templateKey } from './templates.js';
import { warmUp, WARMUP_USER_AGENT } from './template-warmup.js';

async function listen(t: { after: (fn: () => void) => void }, handler: http.RequestListener): Promise<number> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

test('warm-up sends GET / with the Host and User-Agent, one after another, and counts the answers', async (t) => {
  const seen: Array<{ method?: string; url?: string; host?: string; ua?: string }> = [];
  let open = 0;
  let maxOpen = 0;
  const port = await listen(t, (req, res) => {
    open++;
    maxOpen = Math.max(maxOpen, open);
    seen.push({ method: req.method, url: req.url, host: req.headers.host, ua: req.headers['user-agent'] });
    // An error answer warms the path all the same.
    setTimeout(() => {
      open--;
      res.statusCode = 500;
      res.end('boom');
    }, 5);
  });
  const answered = await warmUp({ host: '127.0.0.1', port, hostname: 'app.localhost' }, 3);
  assert.equal(answered, 3);
  assert.deepEqual(seen, Array(3).fill({ method: 'GET', url: '/', host: 'app.localhost', ua: WARMUP_USER_AGENT }));
  assert.equal(maxOpen, 1);
});

test('warm-up gives up, without rejecting, on an app that does not answer in time or refuses', async (t) => {
  let requests = 0;
  const port = await listen(t, () => {
    requests++; // never answers
  });
  assert.equal(await warmUp({ host: '127.0.0.1', port, hostname: 'x' }, 3, { timeoutMs: 50 }), 0);
  assert.equal(requests, 1, 'no further request after one timed out');
  // A port nobody listens on: take one and close it.
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const free = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  assert.equal(await warmUp({ host: '127.0.0.1', port: free, hostname: 'x' }, 3), 0);
});

test('zero warm-up requests send nothing', async (t) => {
  let requests = 0;
  const port = await listen(t, (_req, res) => {
    requests++;
    res.end();
  });
  assert.equal(await warmUp({ host: '127.0.0.1', port, hostname: 'x' }, 0), 0);
  assert.equal(requests, 0);
});

test('a template taken after warm-up requests is a different template', () => {
  const base = { imageDigest: 'sha256:ab', memoryMb: 128, vcpus: 1, guest: { argv: ['x'], env: [], cwd: '/', uid: 0, gid: 0, hostname: 'h' }, port: 8080 };
  assert.notEqual(templateKey({ ...base, warmupRequests: 3 }), templateKey({ ...base, warmupRequests: 0 }));
  assert.equal(templateKey({ ...base, warmupRequests: 0 }), templateKey(base));
});
