// Which registry a FROM name pulls from: short names are Docker Hub's, as in Docker.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { registryHostOf } from './from-images.js';

test('short and docker.io names pull from Docker Hub; qualified names from their registry', () => {
  assert.equal(registryHostOf('node:20-slim'), 'registry-1.docker.io');
  assert.equal(registryHostOf('library/debian:bookworm'), 'registry-1.docker.io');
  assert.equal(registryHostOf('docker.io/library/python:3-slim'), 'registry-1.docker.io');
  assert.equal(registryHostOf('quay.io/podman/stable'), 'quay.io');
  assert.equal(registryHostOf('127.0.0.1:7450/app:1'), '127.0.0.1:7450');
  assert.equal(registryHostOf('localhost/flick/node:20'), 'localhost');
});
