import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePool, slotAddresses } from './addresses.js';
import { hostEgressRules, hostLinkCommands, makePlan, namespaceLinkCommands, namespaceRules, taggedRuleDeletions } from './plan.js';

const plan = makePlan('flick-web', slotAddresses(parsePool(), 5));

test('the host end of the veth gets the slot .1 and the namespace end .2', () => {
  assert.ok(hostLinkCommands(plan).includes(`addr add 10.211.0.21/30 dev ${plan.hostVeth}`));
  assert.ok(hostLinkCommands(plan)[0]?.includes('peer name veth0 netns flick-web'));
  assert.ok(namespaceLinkCommands(plan).includes('addr add 10.211.0.22/30 dev veth0'));
  assert.ok(namespaceLinkCommands(plan).includes('link set tap0 address 02:f1:1c:00:00:01'));
});

test('the namespace DNATs its veth address to the shared guest address, and only that is forwarded new', () => {
  const rules = namespaceRules(plan);
  assert.match(rules, /-A PREROUTING -i veth0 -d 10\.211\.0\.22\/32 -j DNAT --to-destination 172\.31\.255\.2/);
  assert.match(rules, /:FORWARD DROP/);
  assert.match(rules, /:INPUT DROP/);
  // Nothing lets a connection start at the tap.
  assert.doesNotMatch(rules, /-i tap0/);
  assert.doesNotMatch(rules, /MASQUERADE/);
  assert.deepEqual(hostEgressRules(plan), []);
});

test('egress adds masquerading inside and tagged host rules', () => {
  const open = makePlan('flick-web', slotAddresses(parsePool(), 5), true);
  assert.match(namespaceRules(open), /-A FORWARD -i tap0 -o veth0 -s 172\.31\.255\.2\/32 -j ACCEPT/);
  assert.match(namespaceRules(open), /MASQUERADE/);
  const host = hostEgressRules(open);
  assert.equal(host.length, 3);
  for (const r of host) assert.deepEqual(r.slice(r.indexOf('--comment'), r.indexOf('--comment') + 2), ['--comment', 'flick-web']);
});

test('tagged rules in an iptables -S listing become delete commands', () => {
  const listing = [
    '-P FORWARD ACCEPT',
    '-A FORWARD -i fk123 -m comment --comment flick-web -j ACCEPT',
    '-A FORWARD -i docker0 -j ACCEPT',
    '-A FORWARD -o fk123 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "flick-web" -j ACCEPT',
  ].join('\n');
  assert.deepEqual(taggedRuleDeletions('filter', listing, 'flick-'), [
    ['-t', 'filter', '-D', 'FORWARD', '-i', 'fk123', '-m', 'comment', '--comment', 'flick-web', '-j', 'ACCEPT'],
    ['-t', 'filter', '-D', 'FORWARD', '-o', 'fk123', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-m', 'comment', '--comment', 'flick-web', '-j', 'ACCEPT'],
  ]);
});
