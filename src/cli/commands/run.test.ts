import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAutoscale, parseEnv, parseMemory, parsePort, parseScaleToZero } from './run.js';

const usage = (re: RegExp) => (err: any) => err.code === 'USAGE' && re.test(err.message);

test('memory sizes: bare numbers are MiB, M/G suffixes in any case', () => {
  const table: Array<[string, number]> = [['256', 256], ['256M', 256], ['256m', 256], ['256MiB', 256], ['1G', 1024], ['1.5GiB', 1536], ['2g', 2048]];
  for (const [text, mib] of table) assert.equal(parseMemory(text), mib, text);
  for (const bad of ['lots', '', '256K', '0', '1.5M', '-1']) assert.throws(() => parseMemory(bad), usage(/e\.g\./), bad);
});

test('-p PORT[:GUEST][/http|/http+tls|/http+redirect|/tcp]', () => {
  assert.deepEqual(parsePort('8080'), { port: 8080, guest_port: 8080, protocol: 'http' });
  assert.deepEqual(parsePort('80:8080'), { port: 80, guest_port: 8080, protocol: 'http' });
  assert.deepEqual(parsePort('5432/tcp'), { port: 5432, guest_port: 5432, protocol: 'tcp' });
  assert.deepEqual(parsePort('6000:5432/tcp'), { port: 6000, guest_port: 5432, protocol: 'tcp' });
  assert.deepEqual(parsePort('443:8080/http+tls'), { port: 443, guest_port: 8080, protocol: 'http+tls' });
  assert.deepEqual(parsePort('80:443/http+redirect'), { port: 80, guest_port: 443, protocol: 'http+redirect' });
  for (const bad of ['http', '0', '70000', '80:0', '80/udp', '80:', ':80', '443/tls', '443/http+']) assert.throws(() => parsePort(bad), usage(/PORT\[:GUEST\]/), bad);
});

test('--scale-to-zero key=value lists', () => {
  assert.deepEqual(parseScaleToZero('policy=on'), { policy: 'on' });
  assert.deepEqual(parseScaleToZero('policy=idle,cooldown-time=500,stateful=true'), { policy: 'idle', cooldown_time_ms: 500, stateful: true });
  assert.deepEqual(parseScaleToZero('cooldown-time=2s'), { policy: 'on', cooldown_time_ms: 2000 });
  assert.deepEqual(parseScaleToZero('policy=off'), { policy: 'off' });
  assert.throws(() => parseScaleToZero('policy=sometimes'), usage(/policy=on, policy=idle or policy=off/));
  assert.throws(() => parseScaleToZero('cooldown-time=soon'), usage(/cooldown-time=1000/));
  assert.throws(() => parseScaleToZero('stateful=yes'), usage(/stateful=true or stateful=false/));
  assert.throws(() => parseScaleToZero('colour=blue'), usage(/unknown key "colour"/));
});

test('-e K=V, and -e K from the environment', () => {
  assert.deepEqual(parseEnv('A=b=c'), ['A', 'b=c']);
  assert.deepEqual(parseEnv('A='), ['A', '']);
  assert.deepEqual(parseEnv('HOME2', { HOME2: '/root' }), ['HOME2', '/root']);
  assert.throws(() => parseEnv('NOPE', {}), usage(/not set/));
  assert.throws(() => parseEnv('1X=2'), usage(/variable name/));
});

test('--autoscale key=value lists', () => {
  assert.deepEqual(parseAutoscale('min=0,max=8,target-inflight=10,cooldown-time=2s'), { min: 0, max: 8, target_inflight: 10, cooldown_time_ms: 2000 });
  assert.deepEqual(parseAutoscale('max=4'), { max: 4 });
  assert.throws(() => parseAutoscale('max=many'), usage(/max="many" is not a whole number: e\.g\. max=8/));
  assert.throws(() => parseAutoscale('cooldown-time=soon'), usage(/cooldown-time=2000/));
  assert.throws(() => parseAutoscale('size=3'), usage(/unknown key "size"/));
});
