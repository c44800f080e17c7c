import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { copiedPaths } from './buildah-build.js';
import { planDockerfile, substitute } from './dockerfile.js';
import { ImageError } from './image-error.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flick-test-dockerfile-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A context with `files` and the Dockerfile; returns the plan or the thrown ImageError. */
function plan(dockerfile: string, files: Record<string, string> = { 'app.js': '' }, args: Record<string, string> = {}) {
  const dir = fs.mkdtempSync(path.join(tmp, 'ctx-'));
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
  return planDockerfile(path.join(dir, 'Dockerfile'), dir, new Map(Object.entries(args)));
}

function failure(fn: () => unknown): ImageError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ImageError, String(err));
    return err;
  }
  assert.fail('expected an ImageError');
}

const bad: { name: string; dockerfile: string; files?: Record<string, string>; code: string; line: number; message: RegExp }[] = [
  { name: 'unknown instruction', dockerfile: 'FROM debian\nRUNN true\nCMD ["x"]', code: 'DOCKERFILE_INVALID', line: 2, message: /unknown instruction "RUNN"/ },
  { name: 'instruction before FROM', dockerfile: 'RUN true\nFROM debian', code: 'DOCKERFILE_INVALID', line: 1, message: /before the first FROM/ },
  { name: 'FROM without an image', dockerfile: 'FROM\nCMD ["x"]', code: 'DOCKERFILE_INVALID', line: 1, message: /FROM requires an argument/ },
  { name: 'COPY with one argument', dockerfile: 'FROM debian\nCOPY app.js\nCMD ["x"]', code: 'DOCKERFILE_INVALID', line: 2, message: /at least 2 arguments/ },
  { name: 'missing COPY source', dockerfile: 'FROM debian\n\nCOPY nope.js /app/\nCMD ["x"]', code: 'COPY_SOURCE_MISSING', line: 3, message: /COPY nope\.js: no such file/ },
  { name: 'COPY source excluded by .dockerignore', dockerfile: 'FROM debian\nCOPY app.js /app/\nCMD ["x"]', files: { 'app.js': '', '.dockerignore': 'app.js\n' }, code: 'COPY_SOURCE_MISSING', line: 2, message: /excluded by \.dockerignore/ },
  { name: 'glob matching nothing', dockerfile: 'FROM debian\nCOPY *.py /app/\nCMD ["x"]', code: 'COPY_SOURCE_MISSING', line: 2, message: /COPY \*\.py/ },
  { name: 'FROM scratch without a command', dockerfile: 'FROM scratch\nCOPY app.js /', code: 'DOCKERFILE_INVALID', line: 1, message: /no CMD or ENTRYPOINT/ },
  { name: 'FROM from an unset ARG', dockerfile: 'ARG BASE\nFROM $BASE\nCMD ["x"]', code: 'DOCKERFILE_INVALID', line: 2, message: /expands to an empty image name/ },
  { name: 'an empty Dockerfile', dockerfile: '# nothing\n', code: 'DOCKERFILE_INVALID', line: 1, message: /no instructions/ },
];

for (const c of bad) {
  test(`rejects ${c.name}, naming the line`, () => {
    const err = failure(() => plan(c.dockerfile, c.files));
    assert.equal(err.code, c.code);
    assert.equal(err.kind, 'user');
    assert.match(err.message, new RegExp(`^Dockerfile:${c.line}: `));
    assert.match(err.message, c.message);
  });
}

test('an empty or missing context is a user error', () => {
  const empty = fs.mkdtempSync(path.join(tmp, 'empty-'));
  const df = path.join(tmp, 'Dockerfile.empty');
  fs.writeFileSync(df, 'FROM debian\nCMD ["x"]\n');
  assert.equal(failure(() => planDockerfile(df, empty, new Map())).code, 'CONTEXT_INVALID');
  assert.equal(failure(() => planDockerfile(df, path.join(tmp, 'nope'), new Map())).code, 'CONTEXT_INVALID');
  assert.equal(failure(() => planDockerfile(path.join(tmp, 'no-dockerfile'), empty, new Map())).code, 'DOCKERFILE_NOT_FOUND');
});

test('multi-stage: stage references are not base images; ARG before FROM and --build-arg pick the base', () => {
  const p = plan('ARG BASE=node:20\nFROM golang:1 AS build\nRUN go build\nFROM ${BASE}\nCOPY --from=build /out /out\nCMD ["/out"]', {}, { BASE: 'localhost/flick/node:20' });
  assert.deepEqual(p.baseImages, [{ ref: 'golang:1', line: 2 }, { ref: 'localhost/flick/node:20', line: 4 }]);
  assert.equal(p.stages.length, 2);
  assert.equal(p.stages[1]!.steps[0]!.line, 4);
  assert.equal(plan('ARG BASE=node:20\nFROM $BASE\nCMD ["x"]').baseImages[0]!.ref, 'node:20');
});

test('a command is inherited from an earlier stage or left to the base image', () => {
  const p = plan('FROM scratch AS base\nCMD ["/app"]\nFROM base\nCOPY app.js /');
  assert.equal(p.finalSetsCommand, true);
  const q = plan('FROM debian\nCOPY app.js /');
  assert.deepEqual([q.finalSetsCommand, q.finalFromScratch], [false, false]);
});

test('COPY checks: directories, globs, ./ prefixes, --chown flags and variables', () => {
  plan('FROM debian\nCOPY --chown=1:1 ./src/ /app/\nCOPY src/*.js /app/\nCOPY $X /y\nADD https://example.com/a /a\nCMD ["x"]', { 'src/a.js': '' });
});

test('copiedPaths: COPY destinations of the final stage, relative ones under its WORKDIR', () => {
  const p = plan('FROM debian AS b\nCOPY app.js /ignored/\nFROM debian\nWORKDIR /srv\nCOPY app.js ./\nCOPY app.js /opt/tool.js\nWORKDIR web\nCOPY ["app.js", "static/"]\nCMD ["x"]');
  assert.deepEqual(copiedPaths(p, '/'), ['/srv/app.js', '/srv', '/opt/tool.js', '/srv/web/static/app.js', '/srv/web/static']);
});

test('substitute: $VAR, ${VAR}, ${VAR:-default}, unknown → empty', () => {
  const vars = new Map([['A', 'x'], ['E', '']]);
  assert.equal(substitute('$A-${A}-${B:-d}-${E:-e}-$C.', vars), 'x-x-d-e-.');
});

test('HEALTHCHECK with its options, as the final stage declares it; a bad one names its line', () => {
  const p = plan('FROM x\nHEALTHCHECK --interval=5s --retries=2 CMD ["test", "-f", "/tmp/ready"]\nCMD ["app"]');
  assert.deepEqual(p.healthcheck, { argv: ['test', '-f', '/tmp/ready'], intervalMs: 5000, timeoutMs: 30_000, startPeriodMs: 0, retries: 2 });
  assert.equal(plan('FROM x\nHEALTHCHECK CMD true\nHEALTHCHECK NONE\nCMD ["app"]').healthcheck, null);
  assert.throws(() => plan('FROM x\nHEALTHCHECK --interval=soon CMD true\nCMD ["app"]'), /Dockerfile:2: HEALTHCHECK: --interval=soon/);
});
