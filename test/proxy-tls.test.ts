// HTTPS a user turns on, for real: a CA made with openssl, flickd started with
// --proxy-tls-cert/--proxy-tls-key/--proxy-tls-listen, real microVMs created with
// `flick run` (one on the default certificate, one with its own certificate and
// host name, plain HTTP redirected), and curl --cacert as the client: the right
// certificate by SNI, a wrong name refused by curl, an expired certificate
// refused by `flick run` and by flickd, plain HTTP answered with a redirect.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { api, proxyPortOf, runFlick, pushFixtureImage, removeFlickd, startFlickd, type FlickdUnderTest } from '../src/daemon/testing.js';
import { makeTestCa, type TestCa, type TestCertificate } from '../src/proxy/testing-certs.js';
import { runPool, runPrefix, sweepDeadRuns } from '../src/network/run-scoped.js';

const TAG = 'ftls';
const PREFIX = runPrefix(TAG); // <tag><pid>-: a concurrent run of this file never sweeps ours
const POOL = runPool(221);
const IMAGE = 'fixtures/hello:1';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-tls-'));
const dataDir = path.join(tmp, 'data');
let f: FlickdUnderTest;
let ca: TestCa;
let fallback: TestCertificate;
let shop: TestCertificate;
let expired: TestCertificate;
let plainPort = 0;
let httpsPort = 0;

before(async () => {
  await sweepDeadRuns(TAG);
  ca = await makeTestCa();
  [fallback, shop, expired] = await Promise.all([ca.issue(['web.localhost']), ca.issue(['shop.test']), ca.issue(['old.localhost'], { expired: true })]);
  await removeFlickd(undefined, PREFIX, dataDir);
  f = await startFlickd({
    dataDir,
    prefix: PREFIX,
    pool: POOL,
    args: ['--proxy-listen', '127.0.0.1:0', '--proxy-tls-cert', fallback.certFile, '--proxy-tls-key', fallback.keyFile, '--proxy-tls-listen', '127.0.0.1:0'],
  });
  plainPort = proxyPortOf(f);
  httpsPort = proxyPortOf(f, 'https');
  await pushFixtureImage(f, IMAGE, 'hello-server');
});

after(async () => {
  await removeFlickd(f, PREFIX, dataDir);
  await ca?.remove();
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: 240_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((err as unknown as { code: number }).code) : 1;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

const flick = (...args: string[]) => runFlick(f, path.join(tmp, 'config'), ...args);

/** curl as a user would run it, with the host name resolved to the proxy's loopback address. */
function curl(url: string, ...extra: string[]): Promise<Run> {
  const u = new URL(url);
  return run('curl', ['-sS', '--max-time', '60', '--resolve', `${u.hostname}:${u.port}:127.0.0.1`, ...extra, url]);
}

test('flickd serves HTTPS with its default certificate: curl --cacert reaches an instance by name, and both listeners answer', async () => {
  const web = await flick('run', '--name', 'web', IMAGE);
  assert.equal(web.code, 0, web.stderr);
  const secure = await curl(`https://web.localhost:${httpsPort}/`, '--cacert', ca.caFile);
  assert.equal(secure.code, 0, secure.stderr);
  assert.match(secure.stdout, /^hello from flick/);
  const plain = await curl(`http://web.localhost:${plainPort}/`);
  assert.match(plain.stdout, /^hello from flick/);
  // A client that does not trust the CA refuses the certificate (curl's exit 60).
  assert.equal((await curl(`https://web.localhost:${httpsPort}/`)).code, 60);
});

test('flick run --domain --tls-cert --tls-key: the instance gets its own certificate by SNI; plain HTTP is redirected when asked', async () => {
  const shopRun = await flick('run', '--name', 'shop', '-p', '443:8080/http+tls', '-p', '80:443/http+redirect', '--domain', 'shop.test', '--tls-cert', shop.certFile, '--tls-key', shop.keyFile, IMAGE);
  assert.equal(shopRun.code, 0, shopRun.stderr);
  assert.match(shopRun.stdout, new RegExp(`shop running at https://shop\\.test:${httpsPort}`));
  const secure = await curl(`https://shop.test:${httpsPort}/`, '--cacert', ca.caFile, '-v');
  assert.equal(secure.code, 0, secure.stderr);
  assert.match(secure.stdout, /^hello from flick/);
  assert.match(secure.stderr, /subject: CN=shop\.test/);
  const plain = await curl(`http://shop.test:${plainPort}/cart?id=7`, '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}');
  assert.equal(plain.stdout, `308 https://shop.test:${httpsPort}/cart?id=7`);
  // curl -L follows the redirect onto HTTPS (it resolves the name again, so it is given for both ports).
  const followed = await run('curl', ['-sS', '-L', '--max-time', '60', '--cacert', ca.caFile, '--resolve', `shop.test:${plainPort}:127.0.0.1`, '--resolve', `shop.test:${httpsPort}:127.0.0.1`, `http://shop.test:${plainPort}/`]);
  assert.match(followed.stdout, /^hello from flick/, followed.stderr);
  const view = (await api(f, 'GET', '/v1/instances/shop')).json.data;
  assert.deepEqual(view.service.http.tls.names, ['shop.test']);
  assert.equal(view.service.http.plain, 'redirect');
  assert.doesNotMatch(JSON.stringify(view), /PRIVATE KEY/, 'the key never leaves flickd');
});

test('a wrong SNI name gets the default certificate, which curl refuses (exit 60); the listener keeps serving', async () => {
  const wrong = await curl(`https://nope.localhost:${httpsPort}/`, '--cacert', ca.caFile);
  assert.equal(wrong.code, 60, `${wrong.code} ${wrong.stderr}`);
  assert.match(wrong.stderr, /nope\.localhost/);
  // The shop's certificate is not handed to another name either.
  const misnamed = await run('curl', ['-sS', '--max-time', '60', '--cacert', ca.caFile, '--resolve', `shop.test:${httpsPort}:127.0.0.1`, '-H', 'Host: web.localhost', `https://shop.test:${httpsPort}/`]);
  assert.equal(misnamed.code, 0, 'SNI picks the certificate; the Host header then picks the instance');
  assert.match((await curl(`https://web.localhost:${httpsPort}/`, '--cacert', ca.caFile)).stdout, /^hello from flick/);
});

test('an expired, mismatched or misnamed certificate is refused by flick run with what to do, and nothing is created', async () => {
  const table: Array<[string[], RegExp]> = [
    [['--name', 'old', '--tls-cert', expired.certFile, '--tls-key', expired.keyFile], /expired on .*: renew it/],
    [['--name', 'mixed', '--tls-cert', shop.certFile, '--tls-key', fallback.keyFile, '--domain', 'shop.test'], /does not belong to its certificate/],
    [['--name', 'wrongname', '--tls-cert', shop.certFile, '--tls-key', shop.keyFile], /does not cover host "wrongname\.localhost"/],
  ];
  for (const [args, message] of table) {
    const r = await flick('run', '-p', '443:8080/http+tls', ...args, IMAGE);
    assert.equal(r.code, 65, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  const usage = await flick('run', '--name', 'half', '-p', '443:8080/http+tls', '--tls-cert', shop.certFile, IMAGE);
  assert.equal(usage.code, 64);
  assert.match(usage.stderr, /--tls-cert and --tls-key go together/);
  const names = (await api(f, 'GET', '/v1/instances')).json.data.instances.map((i: any) => i.name).sort();
  assert.deepEqual(names, ['shop', 'web']);
});

test('flickd refuses to start with an expired default certificate, saying which and what to do', async () => {
  const other = path.join(tmp, 'other');
  await assert.rejects(
    startFlickd({ dataDir: other, prefix: `${PREFIX}x`, pool: runPool(221, 1), args: ['--proxy-listen', '127.0.0.1:0', '--proxy-tls-cert', expired.certFile, '--proxy-tls-key', expired.keyFile] }),
    (err: Error) => /--proxy-tls-cert .* expired on .*: renew it/.test(err.message),
  );
  await removeFlickd(undefined, `${PREFIX}x`, other);
});
