// Checks a Dockerfile and its build context before buildah runs, so that bad
// input fails fast with a message naming the line (buildah's own messages name
// a step, not a line). Parsing is dockerfile-ast's; Docker's reference for what
// is valid: https://docs.docker.com/reference/dockerfile/
import fs from 'node:fs';
import path from 'node:path';
import dockerignoreModule from '@balena/dockerignore';
import { DockerfileParser, ModifiableInstruction, type Instruction } from 'dockerfile-ast';
import type { GuestHealthcheck } from '../vmm/driver.js';
import { parseHealthcheck } from './healthcheck.js';
import { ImageError } from './image-error.js';

// The package is CommonJS (`module.exports = factory`) but its types declare a default export.
const dockerignore = dockerignoreModule as unknown as typeof dockerignoreModule.default;

const KNOWN = new Set([
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL',
  'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
]);
/** Instructions that take no arguments are none; these need at least this many. */
const MIN_ARGS: Record<string, number> = { COPY: 2, ADD: 2, ENV: 1, ARG: 1, FROM: 1, RUN: 1, USER: 1, WORKDIR: 1, EXPOSE: 1, LABEL: 1 };

export interface Step {
  keyword: string;
  /** 1-based line in the Dockerfile. */
  line: number;
  text: string;
}

export interface Stage {
  /** The FROM argument after ARG substitution ('scratch', a stage name, or an image reference). */
  from: string;
  name: string | undefined;
  steps: Step[];
}

export interface DockerfilePlan {
  /** Display name for messages, e.g. "Dockerfile". */
  file: string;
  stages: Stage[];
  /** External images FROM needs, with the line that names each. */
  baseImages: { ref: string; line: number }[];
  /** Whether the final stage (or a stage it builds on) sets CMD or ENTRYPOINT. */
  finalSetsCommand: boolean;
  /** Whether the final stage's ancestry ends at `scratch` (so nothing can be inherited). */
  finalFromScratch: boolean;
  /** The final stage's HEALTHCHECK (the last one wins): null for NONE, undefined when it has none. */
  healthcheck?: GuestHealthcheck | null;
}

function fail(code: 'DOCKERFILE_INVALID' | 'COPY_SOURCE_MISSING', file: string, line: number, why: string): never {
  throw new ImageError(code, `${file}:${line}: ${why}`, { kind: 'user', details: { file, line } });
}

/** Replaces $VAR and ${VAR} (with :-default) from `vars`; unknown variables become empty, as in Docker. */
export function substitute(text: string, vars: Map<string, string>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, a, def, b) => {
    const v = vars.get((a ?? b) as string);
    return v !== undefined && v !== '' ? v : (def ?? '');
  });
}

/** Parses and checks `dockerfile` against `context`; throws a user ImageError naming the line. */
export function planDockerfile(dockerfile: string, context: string, buildArgs: Map<string, string>): DockerfilePlan {
  const file = path.basename(dockerfile);
  let content: string;
  try {
    content = fs.readFileSync(dockerfile, 'utf8');
  } catch (cause) {
    throw new ImageError('DOCKERFILE_NOT_FOUND', `Dockerfile ${dockerfile} cannot be read: pass its path with -f or put it in the context`, {
      kind: 'user',
      cause,
    });
  }
  checkContext(context);
  const df = DockerfileParser.parse(content);
  const instructions = df.getInstructions();
  if (instructions.length === 0) fail('DOCKERFILE_INVALID', file, 1, 'the Dockerfile has no instructions: it needs at least FROM and CMD');

  const stages: Stage[] = [];
  const globalArgs = new Map<string, string>();
  for (const ins of instructions) {
    const keyword = ins.getKeyword().toUpperCase();
    const line = ins.getRange().start.line + 1;
    if (!KNOWN.has(keyword)) fail('DOCKERFILE_INVALID', file, line, `unknown instruction "${ins.getInstruction()}"`);
    const args = ins.getArguments().map((a) => a.getValue());
    const need = MIN_ARGS[keyword] ?? 1;
    if (args.length < need) fail('DOCKERFILE_INVALID', file, line, `${keyword} requires ${need === 1 ? 'an argument' : `at least ${need} arguments`}`);
    if (keyword === 'ENV' && args.length === 1 && !args[0]!.includes('=')) fail('DOCKERFILE_INVALID', file, line, 'ENV needs NAME=VALUE (or NAME VALUE)');
    let text = (ins.getRawArgumentsContent() ?? '').trim();
    // dockerfile-ast keeps HEALTHCHECK's options apart from its arguments: put them back in front.
    if (keyword === 'HEALTHCHECK' && ins instanceof ModifiableInstruction) {
      text = [...ins.getFlags().map((f) => `--${f.getName()}=${f.getValue() ?? ''}`), text].join(' ');
    }
    const step: Step = { keyword, line, text };
    if (keyword === 'FROM') {
      const positional = args.filter((a) => !a.startsWith('--'));
      if (positional.length !== 1 && !(positional.length === 3 && positional[1]!.toUpperCase() === 'AS')) {
        fail('DOCKERFILE_INVALID', file, line, 'FROM takes an image and an optional "AS name"');
      }
      const vars = new Map([...globalArgs, ...[...buildArgs].filter(([k]) => globalArgs.has(k))]);
      const from = substitute(positional[0]!, vars);
      if (from === '') fail('DOCKERFILE_INVALID', file, line, `FROM ${positional[0]} expands to an empty image name: set it with --build-arg`);
      stages.push({ from, name: positional[2]?.toLowerCase(), steps: [step] });
      continue;
    }
    const stage = stages[stages.length - 1];
    if (!stage) {
      if (keyword !== 'ARG') fail('DOCKERFILE_INVALID', file, line, `${keyword} before the first FROM (only ARG may come before FROM)`);
      const [k, ...v] = args[0]!.split('=');
      globalArgs.set(k!, v.join('='));
      continue;
    }
    stage.steps.push(step);
    if (keyword === 'COPY' || keyword === 'ADD') checkCopySources(ins, keyword, file, line, context);
  }
  if (stages.length === 0) fail('DOCKERFILE_INVALID', file, 1, 'the Dockerfile has no FROM');

  const stageByName = new Map<string, number>();
  stages.forEach((s, i) => s.name !== undefined && stageByName.set(s.name, i));
  const baseImages: { ref: string; line: number }[] = [];
  stages.forEach((s, i) => {
    const local = stageByName.get(s.from.toLowerCase());
    if (local !== undefined && local < i) return;
    if (s.from.toLowerCase() !== 'scratch') baseImages.push({ ref: s.from, line: s.steps[0]!.line });
  });
  // Walk the final stage's ancestry: a CMD anywhere on it is inherited, as in Docker.
  let finalSetsCommand = false;
  let finalFromScratch = false;
  for (let i: number | undefined = stages.length - 1; i !== undefined; ) {
    const s: Stage = stages[i]!;
    if (s.steps.some((st) => st.keyword === 'CMD' || st.keyword === 'ENTRYPOINT')) finalSetsCommand = true;
    const parent = stageByName.get(s.from.toLowerCase());
    if (parent === undefined || parent >= i) {
      finalFromScratch = s.from.toLowerCase() === 'scratch';
      break;
    }
    i = parent;
  }
  const plan: DockerfilePlan = { file, stages, baseImages, finalSetsCommand, finalFromScratch };
  const hcStep = stages[stages.length - 1]!.steps.filter((st) => st.keyword === 'HEALTHCHECK').at(-1);
  if (hcStep) {
    const hc = parseHealthcheck(hcStep.text);
    if (typeof hc === 'string') fail('DOCKERFILE_INVALID', file, hcStep.line, `HEALTHCHECK: ${hc}`);
    plan.healthcheck = hc;
  }
  if (!finalSetsCommand && finalFromScratch) {
    fail('DOCKERFILE_INVALID', file, stages[stages.length - 1]!.steps[0]!.line, 'the final stage has no CMD or ENTRYPOINT, so the microVM would have nothing to run: add one');
  }
  return plan;
}

function checkContext(context: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(context);
  } catch (cause) {
    throw new ImageError('CONTEXT_INVALID', `build context ${context} is not a readable directory: pass the folder holding your app`, {
      kind: 'user',
      cause,
    });
  }
  if (entries.length === 0) {
    throw new ImageError('CONTEXT_INVALID', `build context ${context} is empty: pass the folder holding your app and its Dockerfile`, { kind: 'user' });
  }
}

/** Context files (relative, '/'-separated) that .dockerignore does not exclude; directories end in '/'. */
function contextFiles(context: string): string[] {
  let ig: ReturnType<typeof dockerignore> | undefined;
  try {
    ig = dockerignore().add(fs.readFileSync(path.join(context, '.dockerignore'), 'utf8'));
  } catch {
    ig = undefined;
  }
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(context, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (ig?.ignores(r)) continue;
      out.push(e.isDirectory() ? `${r}/` : r);
      if (e.isDirectory() && out.length < 100_000) walk(r);
    }
  };
  walk('');
  return out;
}

function checkCopySources(ins: Instruction, keyword: string, file: string, line: number, context: string): void {
  const raw = ins.getRawArgumentsContent() ?? '';
  // --from copies out of another stage or image, not the context; heredocs carry their own content.
  const flags = ins instanceof ModifiableInstruction ? ins.getFlags().map((f) => f.getName().toLowerCase()) : [];
  if (flags.includes('from') || raw.includes('<<')) return;
  let args: string[];
  const json = raw.replace(/^(--\S+\s+)*/, '').trim();
  if (json.startsWith('[')) {
    try {
      args = JSON.parse(json) as string[];
    } catch {
      fail('DOCKERFILE_INVALID', file, line, `${keyword} has a malformed JSON argument list`);
    }
  } else {
    args = ins.getArguments().map((a) => a.getValue()).filter((a) => !a.startsWith('--'));
  }
  const sources = args.slice(0, -1);
  let files: string[] | undefined;
  for (const src of sources) {
    if (src.includes('$') || /^[a-z]+:\/\//i.test(src)) continue;
    const rel = path.posix.normalize(src).replace(/^(\.\/|\/)+/, '').replace(/\/$/, '');
    if (rel === '.' || rel === '') continue;
    files ??= contextFiles(context);
    const found = /[*?[]/.test(rel)
      ? files.some((f) => dockerignore().add(rel).ignores(f.replace(/\/$/, '')))
      : files.includes(rel) || files.includes(`${rel}/`);
    if (!found) {
      const ignored = fs.existsSync(path.join(context, rel));
      fail(
        'COPY_SOURCE_MISSING',
        file,
        line,
        `${keyword} ${src}: ${ignored ? 'excluded by .dockerignore' : `no such file in the build context ${context}`}; add it or fix the path`,
      );
    }
  }
}
