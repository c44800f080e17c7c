// The pool of VM networks against the real kernel (ip, iptables; run as root):
// a run-scoped prefix and address pool, so nothing else's namespaces are touched.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { namespaceExists, sweepLeftovers } from './namespace-network.js';
import { NamespacePool } from './namespace-pool.js';
import { runPool, runPrefix, sweepDeadRuns } from './run-scoped.js';

const TAG = 'fkpt-';
const PREFIX = runPrefix(TAG);
const pool = new NamespacePool({ prefix: PREFIX, pool: runPool(214), size: 2 });

before(() => sweepDeadRuns(TAG));
after(async () => {
  await pool.dispose();
  await sweepLeftovers(PREFIX);
});

function ours(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(PREFIX))
    .sort();
}

test('the sweep removes our leftovers, keeps held and foreign names, and fills the pool', async () => {
  // A crash's leftovers: a pooled name and a held one; and a name that is not ours to sweep.
  for (const ns of [`${PREFIX}n7`, `${PREFIX}n9`, `${PREFIX}keepme`]) execFileSync('ip', ['netns', 'add', ns]);
  await pool.sweep([{ index: 9, netns: `${PREFIX}n9` }]);
  await pool.settled();
  assert.equal(pool.readyCount, 2);
  assert.ok(!namespaceExists(`${PREFIX}n7`), 'an orphan is swept');
  assert.ok(namespaceExists(`${PREFIX}n9`), 'a held network stays');
  assert.ok(namespaceExists(`${PREFIX}keepme`), 'a name we do not make is never swept');
  assert.deepEqual(ours(), [`${PREFIX}keepme`, `${PREFIX}n0`, `${PREFIX}n1`, `${PREFIX}n9`], 'the pool took the lowest free slots');
  execFileSync('ip', ['netns', 'del', `${PREFIX}keepme`]);
  await pool.release({ index: 9, netns: `${PREFIX}n9` });
});

test('acquire hands out a ready network at once, the pool refills, and release removes it', async () => {
  await pool.settled();
  const lease = await pool.acquire();
  assert.equal(pool.readyCount, 1, 'taken from the pool');
  assert.equal(lease.attachment.netns, `${PREFIX}n${lease.index}`);
  assert.ok(namespaceExists(lease.attachment.netns!));
  // Every pooled network has its rules: the DNAT to the shared guest address.
  const rules = execFileSync('ip', ['netns', 'exec', lease.attachment.netns!, 'iptables', '-t', 'nat', '-S'], { encoding: 'utf8' });
  assert.match(rules, new RegExp(`-d ${lease.attachment.hostReachableIp!.replace(/\./g, '\\.')}/32 .*DNAT --to-destination 172\\.31\\.255\\.2`));
  await pool.settled();
  assert.equal(pool.readyCount, 2, 'refilled in the background');
  await pool.release({ index: lease.index, netns: lease.attachment.netns! });
  assert.ok(!namespaceExists(lease.attachment.netns!), 'a used network is deleted, never pooled again');
  // An empty pool still serves: the network is made on demand.
  const empty = new NamespacePool({ prefix: `${PREFIX}e-`, pool: runPool(215), size: 0 });
  const made = await empty.acquire();
  assert.equal(empty.readyCount, 0);
  assert.ok(namespaceExists(made.attachment.netns!));
  await empty.release({ index: made.index, netns: made.attachment.netns! });
  assert.ok(!namespaceExists(made.attachment.netns!));
  await pool.dispose();
  assert.deepEqual(ours(), [], 'dispose removes the ready ones');
});
