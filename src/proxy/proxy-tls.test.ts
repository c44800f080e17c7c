// Component tests of HTTPS at the proxy: a CA made with openssl, a default
// certificate, per-route certificates chosen by SNI, plain HTTP redirected
// where a route asks, and the checks a certificate passes before it is used.
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { checkCertificate, summarizeCertificate } from './certificates.js';
import { ProxyError } from './errors.js';
import { makeTestCa, type TestCa, type TestCertificate } from './testing-certs.js';
import { FakeWaker, request, startProxy, startUpstream } from './testing.js';

let ca: TestCa;
let fallback: TestCertificate;
let shop: TestCertificate;
let expired: TestCertificate;

before(async () => {
  ca = await makeTestCa();
  [fallback, shop, expired] = await Promise.all([ca.issue(['plain.localhost', 'b.localhost']), ca.issue(['shop.example.com']), ca.issue(['old.localhost'], { expired: true })]);
});
after(() => ca.remove());

interface HttpsAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The CN of the certificate the proxy presented. */
  servedCn: string;
}

function httpsGet(port: number, servername: string, path = '/', trust = ca.ca): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, servername, path, ca: trust, headers: { host: servername }, agent: false }, (res) => {
      const servedCn = String((res.socket as TLSSocket).getPeerCertificate().subject?.CN ?? '');
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, servedCn }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('HTTPS listener: a route with its own certificate gets it by SNI, others the default; both reach plain HTTP instances', async (t) => {
  const upstream = await startUpstream(t, (req, res) => res.end(`${req.headers.host} proto=${req.headers['x-forwarded-proto']}`));
  const { proxy, routes, port } = await startProxy(t, new FakeWaker(), { tls: { cert: fallback.cert, key: fallback.key }, tlsListen: { host: '127.0.0.1', port: 0 } });
  routes.setHttpHost('shop.example.com', { instanceId: 'i-shop', targetPort: upstream.port, certificate: { cert: shop.cert, key: shop.key } });
  routes.setHttp('b', { instanceId: 'i-b', targetPort: upstream.port });
  const tlsPort = proxy.tlsAddress!.port;
  assert.notEqual(tlsPort, port);

  const a = await httpsGet(tlsPort, 'shop.example.com');
  assert.equal(a.servedCn, 'shop.example.com');
  assert.equal(a.body, 'shop.example.com proto=https');
  const b = await httpsGet(tlsPort, 'b.localhost');
  assert.equal(b.servedCn, 'plain.localhost', 'the default certificate');
  assert.equal(b.body, 'b.localhost proto=https');
  // The plain listener still serves, and says so to the instance.
  assert.equal((await request(port, { host: 'b.localhost' })).body, 'b.localhost proto=http');
  assert.equal((await request(port, { host: 'SHOP.example.com.:80' })).body, 'SHOP.example.com.:80 proto=http', 'whole host names route case-insensitively');
});

test('a client naming a host the certificate does not cover refuses it; without a default certificate the handshake fails', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('ok'));
  const withDefault = await startProxy(t, new FakeWaker(), { tls: { cert: fallback.cert, key: fallback.key }, tlsListen: { host: '127.0.0.1', port: 0 } });
  withDefault.routes.setHttp('other', { instanceId: 'i-1', targetPort: upstream.port });
  await assert.rejects(httpsGet(withDefault.proxy.tlsAddress!.port, 'other.localhost'), (err: NodeJS.ErrnoException) => err.code === 'ERR_TLS_CERT_ALTNAME_INVALID');
  // A client that does not trust the CA refuses even the right name.
  await assert.rejects(httpsGet(withDefault.proxy.tlsAddress!.port, 'b.localhost', '/', fallback.cert), (err: NodeJS.ErrnoException) => /UNABLE_TO_VERIFY|self.signed|unable to (get|verify)/i.test(`${err.code} ${err.message}`));

  const sniOnly = await startProxy(t, new FakeWaker(), { tlsListen: { host: '127.0.0.1', port: 0 } });
  sniOnly.routes.setHttpHost('shop.example.com', { instanceId: 'i-shop', targetPort: upstream.port, certificate: { cert: shop.cert, key: shop.key } });
  assert.equal((await httpsGet(sniOnly.proxy.tlsAddress!.port, 'shop.example.com')).body, 'ok');
  await assert.rejects(httpsGet(sniOnly.proxy.tlsAddress!.port, 'b.localhost'), (err: NodeJS.ErrnoException) => /alert|socket hang up|ECONNRESET|handshake/i.test(`${err.code} ${err.message}`));
  // The listener keeps serving after failed handshakes.
  assert.equal((await httpsGet(sniOnly.proxy.tlsAddress!.port, 'shop.example.com')).body, 'ok');
});

test('a route that asks for HTTPS only redirects plain HTTP (308, same path) and upgrades too; without an HTTPS listener it says so', async (t) => {
  const upstream = await startUpstream(t, (req, res) => res.end(`secure ${req.url}`));
  const { proxy, routes, port } = await startProxy(t, new FakeWaker(), { tls: { cert: fallback.cert, key: fallback.key }, tlsListen: { host: '127.0.0.1', port: 0 } });
  routes.setHttp('b', { instanceId: 'i-1', targetPort: upstream.port, plain: 'redirect' });
  const tlsPort = proxy.tlsAddress!.port;
  const plain = await request(port, { host: 'b.localhost:1234', path: '/cart?x=1', method: 'POST', body: 'abc' });
  assert.equal(plain.status, 308);
  assert.equal(plain.headers.location, `https://b.localhost:${tlsPort}/cart?x=1`);
  assert.equal((await httpsGet(tlsPort, 'b.localhost', '/cart?x=1')).body, 'secure /cart?x=1');
  const upgradeStatus = await new Promise<number>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, headers: { host: 'b.localhost', connection: 'Upgrade', upgrade: 'websocket' } });
    req.on('response', (res) => resolve(res.statusCode ?? 0));
    req.on('upgrade', () => reject(new Error('upgraded over plain HTTP')));
    req.on('error', reject);
    req.end();
  });
  assert.equal(upgradeStatus, 308);

  const noTls = await startProxy(t, new FakeWaker());
  noTls.routes.setHttp('b', { instanceId: 'i-1', targetPort: upstream.port, plain: 'redirect' });
  const refused = await request(noTls.port, { host: 'b.localhost' });
  assert.equal(refused.status, 421);
  assert.match(refused.body, /--proxy-tls-listen/);
});

test('checkCertificate: a good pair passes; garbage, a foreign key, an expired certificate and a wrong host are user errors saying what to do', () => {
  checkCertificate({ cert: shop.cert, key: shop.key }, 'tls_cert', 'shop.example.com');
  assert.deepEqual(summarizeCertificate(shop.cert).names, ['shop.example.com']);
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['garbage', () => checkCertificate({ cert: 'nope', key: shop.key }, 'tls_cert'), /tls_cert is not a PEM certificate/],
    ['garbage key', () => checkCertificate({ cert: shop.cert, key: 'nope' }, 'tls_cert'), /key of tls_cert is not a PEM private key/],
    ['foreign key', () => checkCertificate({ cert: shop.cert, key: fallback.key }, 'tls_cert'), /does not belong to its certificate/],
    ['expired', () => checkCertificate({ cert: expired.cert, key: expired.key }, '--proxy-tls-cert'), /--proxy-tls-cert expired on .*: renew it/],
    ['wrong host', () => checkCertificate({ cert: shop.cert, key: shop.key }, 'tls_cert', 'web.localhost'), /does not cover host "web.localhost" \(it names shop.example.com\)/],
  ];
  for (const [what, fn, message] of cases) {
    assert.throws(fn, (err: unknown) => err instanceof ProxyError && err.code === 'invalid_certificate' && err.kind === 'user' && message.test(err.message), what);
  }
});
