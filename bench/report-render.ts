// The side-by-side report's two renderings, pure functions of the collected
// results: the Markdown table (each figure beside its peer and its goal, with
// pass/miss) and a hand-written SVG of the wake latency distributions.

/** Everything `npm run bench` collected (bench/results/latest.json). */
export interface Latest {
  accel: string;
  date: string;
  machine: { cpu: string; cores: number; ram_bytes: number; kernel: string; os: string; load_before: number[] };
  results: Record<string, any>;
}

interface Row {
  section: string;
  measure: string;
  flick: string;
  peer: string;
  goal: string;
  verdict: 'pass' | 'miss' | '—';
}

const ms = (x: number | null | undefined): string => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : `${x < 10 ? x.toFixed(1) : Math.round(x).toLocaleString('en')} ms`);
const mib = (x: number | null | undefined): string => (x === null || x === undefined ? 'n/a' : x >= 2 ** 30 ? `${(x / 2 ** 30).toFixed(2)} GiB` : x >= 2 ** 20 ? `${(x / 2 ** 20).toFixed(1)} MiB` : `${(x / 1024).toFixed(1)} KiB`);
const num = (x: number | null | undefined): string => (x === null || x === undefined ? 'n/a' : x.toLocaleString('en'));
const dist = (d: any): string => (d && d.n > 0 ? `${ms(d.p50)} (p90 ${ms(d.p90)}, p99 ${ms(d.p99)}, n ${d.n})` : 'n/a');
const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;

function verdict(ok: boolean | undefined): Row['verdict'] {
  return ok === undefined ? '—' : ok ? 'pass' : 'miss';
}

/** `value` is usable: a number, not NaN. */
function has(...values: unknown[]): boolean {
  return values.every((v) => typeof v === 'number' && !Number.isNaN(v));
}

export function rows(latest: Latest): Row[] {
  const out: Row[] = [];
  const add = (section: string, measure: string, flick: string, peer: string, goal: string, ok?: boolean) => out.push({ section, measure, flick, peer, goal, verdict: verdict(ok) });
  const w = latest.results.wake?.results;
  const wd = latest.results.wake?.details;
  if (w) {
    const s = 'wake (issue 6)';
    add(s, 'minimal server: hot wake → first byte, p50', dist(w.wake_hot_min_ms), `warm request ${ms(w.warm_min_ms?.p50)}`, '≤ 10 ms', has(w.wake_hot_min_ms?.p50) ? w.wake_hot_min_ms.p50 <= 10 : undefined);
    add(s, 'node app: hot wake → first byte, p50', dist(w.wake_hot_ms), `warm request ${dist(w.warm_ms)}`, '≤ warm + 5 ms', has(w.wake_hot_ms?.p50, w.warm_ms?.p50) ? w.wake_hot_ms.p50 <= w.warm_ms.p50 + 5 : undefined);
    add(s, 'node app: cold wake → first byte, p50', dist(w.wake_cold_ms), `container (podman + runc) ${dist(w.container_cold_ms)}`, '≤ ½ container', has(w.wake_cold_ms?.p50, w.container_cold_ms?.p50) ? w.wake_cold_ms.p50 <= w.container_cold_ms.p50 / 2 : undefined);
    add(s, 'minimal server: cold wake → first byte, p50', dist(w.wake_cold_min_ms), `warm request ${ms(w.warm_min_ms?.p50)}`, '—');
    add(s, 'node app: container cold start (same image), p50', dist(w.container_cold_ms), `bare \`node server.js\` ${dist(wd?.bare_node_cold_ms)}`, 'peer');
    const b = w.burst;
    if (b) {
      const ok = b.ok === b.requests && b.wakes === 1 && has(b.p99_ms, w.wake_cold_ms?.p50) ? b.p99_ms <= 2 * w.wake_cold_ms.p50 : false;
      add(s, `burst of ${num(b.requests)} requests on a sleeping node instance`, `${num(b.ok)} answered, ${b.wakes} wake(s), p50 ${ms(b.p50_ms)}, p99 ${ms(b.p99_ms)}`, `cold wake p50 ${ms(w.wake_cold_ms?.p50)}`, 'all answered, 1 wake, p99 ≤ 2× wake p50', ok);
    }
    // Issue 18 raised the hot-wake goals and held the burst to the instance's own warm throughput.
    add(s, 'issue 18: minimal server hot wake → first byte, p50', ms(w.wake_hot_min_ms?.p50), `warm request ${ms(w.warm_min_ms?.p50)}`, '≤ 3 ms', has(w.wake_hot_min_ms?.p50) ? w.wake_hot_min_ms.p50 <= 3 : undefined);
    add(s, 'issue 18: node app hot wake → first byte, p50', ms(w.wake_hot_ms?.p50), `warm request ${ms(w.warm_ms?.p50)}`, '≤ warm + 2 ms', has(w.wake_hot_ms?.p50, w.warm_ms?.p50) ? w.wake_hot_ms.p50 <= w.warm_ms.p50 + 2 : undefined);
    if (b && has(b.p99_bound_ms, b.warm_rps)) add(s, 'issue 18: the burst held to the app\'s own speed, p99', ms(b.p99_ms), `bound = cold wake p50 + 1.2 × ${num(b.requests)} / warm ${num(Math.round(b.warm_rps))} req/s = ${ms(b.p99_bound_ms)}`, '≤ the bound', b.ok === b.requests && b.p99_ms <= b.p99_bound_ms);
    // Issue 18, primed restores: measured beside the container of the same run (details.primed_run after --only-primed).
    if (w.wake_primed_min_ms || w.wake_primed_ms) {
      const container = wd?.primed_run?.container_cold_ms ?? w.container_cold_ms;
      const coldMin = wd?.primed_run?.wake_cold_min_ms ?? w.wake_cold_min_ms;
      add(s, 'issue 18: minimal server cold wake with a primed VM → first byte, p50', dist(w.wake_primed_min_ms), `cold wake without ${ms(coldMin?.p50)}`, '≤ 20 ms', has(w.wake_primed_min_ms?.p50) ? w.wake_primed_min_ms.p50 <= 20 : undefined);
      add(s, 'issue 18: node app cold wake with a primed VM → first byte, p50', dist(w.wake_primed_ms), `container (podman + runc) ${dist(container)}`, '≤ 0.7 × container', has(w.wake_primed_ms?.p50, container?.p50) ? w.wake_primed_ms.p50 <= 0.7 * container.p50 : undefined);
      const pp = wd?.primed_pool;
      if (pp) add(s, 'host RAM of one primed VM (its memory cgroup as flickd counts it; PSS)', `minimal ${mib(pp.cgroup_bytes_each?.min)} (PSS ${mib(pp.pss_bytes_each?.min)}), node ${mib(pp.cgroup_bytes_each?.node)} (PSS ${mib(pp.pss_bytes_each?.node)})`, `--primed-pool-mb budget`, '—');
    }
    const bd = w.breakdown;
    if (bd?.hot_min?.total !== undefined) {
      const phases = (x: any) => ['controller', 'vmm', 'clock', 'forward', 'upstream', 'client'].map((k) => `${k} ${typeof x?.[k] === 'number' ? x[k].toFixed(2) : 'n/a'}`).join(' · ');
      add(s, 'wake breakdown, p50 per phase in ms: minimal hot', phases(bd.hot_min), `total ${ms(bd.hot_min.total)}`, '—');
      if (bd.hot) add(s, 'wake breakdown, p50 per phase in ms: node hot', phases(bd.hot), `total ${ms(bd.hot.total)}`, '—');
      if (bd.cold) add(s, 'wake breakdown, p50 per phase in ms: node cold', phases(bd.cold), `total ${ms(bd.cold.total)}`, '—');
      if (bd.primed_min) add(s, 'wake breakdown, p50 per phase in ms: minimal cold, primed VM', phases(bd.primed_min), `total ${ms(bd.primed_min.total)}`, '—');
      if (bd.primed) add(s, 'wake breakdown, p50 per phase in ms: node cold, primed VM', phases(bd.primed), `total ${ms(bd.primed.total)}`, '—');
    }
    const res = wd?.hot_resident;
    if (res) {
      add(s, 'hot wake with the guest RAM left resident, p50 (the other side of the trade)', `minimal ${dist(res.wake_min_ms)}; node ${dist(res.wake_ms)}`, `paged out: minimal ${ms(w.wake_hot_min_ms?.p50)}, node ${ms(w.wake_hot_ms?.p50)}`, 'minimal ≤ 10 ms', has(res.wake_min_ms?.p50) ? res.wake_min_ms.p50 <= 10 : undefined);
      add(s, 'host RAM of one hot-standby instance with its guest RAM resident (PSS)', `node ${mib(res.ram_bytes_each)}, minimal ${mib(res.ram_bytes_each_min)}`, `paged out: node ${mib(w.hot_ram_bytes_each)}, minimal ${mib(wd?.hot_ram_bytes_each_min)}`, '—');
    }
    add(s, 'host RAM of one hot-standby instance (PSS, guest RAM paged out)', `node ${mib(w.hot_ram_bytes_each)}, minimal ${mib(wd?.hot_ram_bytes_each_min)}`, 'trial: ≈ 93 MB node / ≈ 37 MB minimal (anonymous)', 'as little as it can', undefined);
  }
  const d = latest.results.density?.results;
  if (d) {
    const s = 'density (issues 7, 18)';
    add(s, 'standby instances on one host', num(d.standby_instances), '—', '≥ 100,000', has(d.standby_instances) ? d.standby_instances >= 100_000 : undefined);
    const each = d.standby_instances > 0 ? d.standby_ram_bytes / d.standby_instances : null;
    const at100k = each === null ? null : d.standby_instances >= 100_000 ? d.standby_ram_bytes : each * 100_000;
    const extrapolated = d.standby_instances < 100_000 ? ` → ${mib(at100k)} for 100,000 (extrapolated)` : '';
    add(s, 'host RAM of all standby instances (flickd included)', `${mib(d.standby_ram_bytes)} (${mib(each)} each)${extrapolated}; flickd RSS ${mib(d.flickd_rss_bytes)}`, '—', '≤ 2 GiB for 100,000', at100k === null ? undefined : at100k <= 2 * 2 ** 30);
    if (has(d.restart_ms)) add(s, `flickd restart with ${num(d.standby_instances)} records → serving (reconcile + routes)`, ms(d.restart_ms), '—', '≤ 10 s', d.restart_ms <= 10_000);
    if (d.list_ms) add(s, `list of ${num(d.standby_instances)}: one page of 100 by state (API; \`flick ls --limit 100\`)`, `${ms(d.list_ms.api_page_100)} (${typeof d.list_ms.flick_ls_limit_100 === 'number' ? ms(d.list_ms.flick_ls_limit_100) : d.list_ms.flick_ls_limit_100})`, `the whole list ${ms(d.list_ms.api_all)}`, '—');
    const ns = latest.results.density?.details?.network_namespace_alone;
    if (ns) add(s, 'kernel memory of one instance network (namespace, veth, tap, rules)', `${mib(ns.kernel_bytes_each)}; made in ${ms(ns.attach_ms_each)}, removed in ${ms(ns.detach_ms_each)}`, '—', '—');
    add(s, 'disk per standby instance', mib(d.standby_disk_bytes_each), '—', '—');
    add(s, 'create rate (to standby)', `${d.create_per_s} /s`, '—', '—');
    add(s, 'idle running minimal instances', num(d.running_instances), '—', '≥ 1,000', has(d.running_instances) ? d.running_instances >= 1000 : undefined);
    add(s, 'PSS of one idle running minimal instance', mib(d.running_pss_bytes_each), '—', '—');
    if (typeof d.running_cpu_percent_each === 'number') add(s, 'CPU of one idle running minimal instance', `${d.running_cpu_percent_each} % of a core`, '—', '—');
    add(s, 'wake of the N-th standby instance vs the first', `${ms(d.wake_last_ms)} vs ${ms(d.wake_first_ms)}`, '—', 'within 20 %', has(d.wake_last_ms, d.wake_first_ms) ? d.wake_last_ms <= d.wake_first_ms * 1.2 : undefined);
  }
  const pg = latest.results.postgres?.results;
  if (pg) {
    const s = 'PostgreSQL on a volume (issue 13)';
    const unprimed = latest.results.postgres?.details?.wake_cold_unprimed_ms;
    if (unprimed) add(s, 'cold wake, unprimed (restored on the wake) → SELECT 1, p50', dist(unprimed), `host \`pg_ctl start\` → SELECT 1 ${dist(pg.host_cold_start_ms)}`, '—');
    add(s, 'cold wake (primed) → SELECT 1 answered through the proxy, p50', dist(pg.wake_cold_ms), `host \`pg_ctl start\` → SELECT 1 ${dist(pg.host_cold_start_ms)}`, '≤ the host\'s cold start', has(pg.wake_cold_ms?.p50, pg.host_cold_start_ms?.p50) ? pg.wake_cold_ms.p50 <= pg.host_cold_start_ms.p50 : undefined);
    add(s, 'hot wake → SELECT 1 answered through the proxy, p50', dist(pg.wake_hot_ms), '—', '—');
    add(s, 'pgbench TPS through the proxy / direct', has(pg.pgbench_tps_proxy, pg.pgbench_tps_direct) ? `${pg.pgbench_tps_proxy} / ${pg.pgbench_tps_direct} (${pct(pg.pgbench_tps_proxy / pg.pgbench_tps_direct)})` : 'n/a', 'direct to the instance', '≥ 90 %', has(pg.pgbench_tps_proxy, pg.pgbench_tps_direct) ? pg.pgbench_tps_proxy >= 0.9 * pg.pgbench_tps_direct : undefined);
    add(s, 'standby PostgreSQL instances, own database each', `${num(pg.standby_instances)}: ${mib(pg.standby_ram_bytes)} host RAM, ${mib(pg.standby_disk_bytes_each)} disk each`, '—', '≥ 1,000 in ≤ 2 GiB, ≤ 1 MiB disk each', has(pg.standby_instances) ? pg.standby_instances >= 1000 && pg.standby_ram_bytes <= 2 * 2 ** 30 && pg.standby_disk_bytes_each <= 2 ** 20 : undefined);
    const sf = latest.results.postgres?.details?.shared_forks;
    const sfDisk = latest.results.postgres?.details?.shared_fork_disk_bytes_each;
    if (sf && typeof sfDisk === 'number') {
      add(s, 'standby databases as shared forks of one (flick fork --shared)', `${num(sf.instances)} in ${sf.seconds} s: ${mib(sfDisk)} disk, ${mib(sf.flickd_rss_bytes_each)} flickd RSS each`, '—', '≥ 1,000 in ≤ 2 GiB, ≤ 1 MiB disk each', sf.instances >= 1000 && sf.flickd_rss_bytes_each * sf.instances <= 2 * 2 ** 30 && sfDisk <= 2 ** 20);
    }
    const sq = latest.results.postgres?.details?.shared_fork_first_query_ms;
    if (sq) add(s, 'shared fork → its first SELECT 1 (its first wake)', dist(sq), `cold wake → SELECT 1 ${dist(pg.wake_cold_ms)}`, 'as fast as a wake', has(sq.p50, pg.wake_cold_ms?.p50) ? sq.p50 <= pg.wake_cold_ms.p50 * 1.2 : undefined);
    const fk = latest.results.postgres?.details?.fork_to_first_query_ms;
    add(s, 'fork of a standby database (memory + volumes at one instant)', pg.fork_ms === null || pg.fork_ms === undefined ? 'not built' : typeof pg.fork_ms === 'number' ? ms(pg.fork_ms) : dist(pg.fork_ms), fk ? `fork → first query ${dist(fk)}` : '—', '—');
  }
  const p = latest.results.proxy?.results;
  if (p) {
    const s = 'proxy (issue 7)';
    const pd = latest.results.proxy?.details;
    add(s, 'latency the proxy adds, p50 (wrk)', ms(p.added_p50_ms), pd?.direct ? `direct p50 ${ms(pd.direct.p50_ms)}` : '—', '≤ 0.5 ms', has(p.added_p50_ms) ? p.added_p50_ms <= 0.5 : undefined);
    add(s, 'throughput through the proxy / direct', pct(p.rps_ratio), pd?.direct ? `direct ${num(Math.round(pd.direct.rps))} req/s` : '—', '≥ 70 %', has(p.rps_ratio) ? p.rps_ratio >= 0.7 : undefined);
  }
  const v = latest.results.vmm?.results;
  if (v) {
    const s = 'VMM (issue 2)';
    add(s, 'cold boot → first byte (minimal), p50', ms(v.boot_ms?.p50), '—', '—');
    add(s, 'restore of a template → first byte, p50', ms(v.restore_ms?.p50), `cold boot ${ms(v.boot_ms?.p50)}`, '≤ 80 ms', has(v.restore_ms?.p50) ? v.restore_ms.p50 <= 80 : undefined);
    add(s, 'paused → resume → first byte, p50', ms(v.resume_ms?.p50), '—', '≤ 5 ms', has(v.resume_ms?.p50) ? v.resume_ms.p50 <= 5 : undefined);
  }
  const sv = latest.results.service?.results;
  if (sv) {
    const s = 'services (issue 14)';
    const bs = sv.burst_service;
    const b1 = sv.burst_single;
    add(s, `burst of ${num(bs?.requests)} at zero against a service (autoscale max=4): answered, wakes`, `${num(bs?.ok)} / ${num(bs?.requests)}, ${bs?.wakes} wakes`, `single instance ${num(b1?.ok)} / ${num(b1?.requests)}, ${b1?.wakes} wake`, 'all answered', has(bs?.ok) ? bs.ok === bs.requests : undefined);
    add(s, 'the burst\'s p99 (p50)', `${ms(bs?.p99_ms)} (${ms(bs?.p50_ms)})`, `single instance ${ms(b1?.p99_ms)} (${ms(b1?.p50_ms)})`, '≤ ½ of the single instance\'s', has(bs?.p99_ms) && has(b1?.p99_ms) ? bs.p99_ms <= b1.p99_ms / 2 : undefined);
    const d = sv.deploy;
    add(s, 'rolling deploy of 3 replicas under load: failed requests, p99 during', d ? `${d.failed} of ${num(d.requests)} failed, p99 ${ms(d.p99_ms_during)} (${ms(d.duration_ms)} long)` : 'n/a', d ? `p99 before ${ms(d.p99_ms_before)}` : '—', '0 failed, p99 ≤ 2× before', d ? d.failed === 0 && d.p99_ms_during <= 2 * d.p99_ms_before : undefined);
  }
  const cl = latest.results.cluster?.results;
  if (cl) {
    const s = 'cluster (issue 15; 3 hosts and 3 etcd members on one machine)';
    add(s, 'failover: owner killed → first 2xx through another proxy, p50', `${ms(cl.failover_ms?.p50)} (max ${ms(cl.failover_ms?.max)}, n ${cl.failover_ms?.n})`, 'Kubernetes defaults ≈ 6 min', '≤ 10 s', has(cl.failover_ms?.p50) ? cl.failover_ms.p50 <= 10_000 : undefined);
    add(s, 'route propagation (create on A → routed at C), p99', `${ms(cl.route_propagation_ms?.p99)} (p50 ${ms(cl.route_propagation_ms?.p50)})`, '—', '≤ 100 ms', has(cl.route_propagation_ms?.p99) ? cl.route_propagation_ms.p99 <= 100 : undefined);
    add(s, 'latency the cross-host hop adds, p50', ms(cl.cross_host_added_ms), `same host p50 ${ms(cl.same_host_request_ms?.p50)}`, '≤ 1 ms', has(cl.cross_host_added_ms) ? cl.cross_host_added_ms <= 1 : undefined);
    add(s, 'creates over the cluster (no boots)', `${cl.creates_per_s} /s`, '—', '—');
    add(s, `a host's start-up with ${num(cl.catalog_instances)} instances (to the last one routed)`, ms(cl.host_startup_ms), `etcd db ${mib(cl.etcd_db_bytes)}`, '≤ 5 s', has(cl.host_startup_ms) ? cl.host_startup_ms <= 5000 : undefined);
  }
  const st = latest.results.state?.results;
  if (st) {
    const s = 'state seam (issue 15; etcd backend beside SQLite, 3 etcd members on one machine)';
    add(s, 'create (a shared write), p50', ms(st.create_ms?.etcd?.p50), `SQLite ${ms(st.create_ms?.sqlite?.p50)}`, '—');
    add(s, 'status write as the controller sees it, p50', ms(st.status_write_ms?.etcd?.p50), `SQLite ${ms(st.status_write_ms?.sqlite?.p50)}`, '—');
    add(s, 'status write → seen by another host, p99', `${ms(st.publish_lag_ms?.p99)} (p50 ${ms(st.publish_lag_ms?.p50)})`, '—', '≤ 100 ms', has(st.publish_lag_ms?.p99) ? st.publish_lag_ms.p99 <= 100 : undefined);
    add(s, `open with ${num(st.records)} records (list + watch)`, ms(st.open_ms?.etcd), `SQLite ${ms(st.open_ms?.sqlite)}`, '≤ 5 s', has(st.open_ms?.etcd) ? st.open_ms.etcd <= 5000 : undefined);
  }
  const i = latest.results.image?.results;
  if (i) {
    const s = 'image (issues 3, 17)';
    // The whole image as pushed (every layer, the kernel and init included); older results only had the root filesystem.
    const total = i.image_total_bytes ?? i.image_bytes;
    const ratio = total / i.source_image_bytes;
    const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
    add(s, 'node app: microVM image, every layer as pushed', `${mb(total)} (${(100 * ratio).toFixed(1)} %)`, `container image ${mb(i.source_image_bytes)}`, '≤ 25 MB and ≤ 9 % of the container image', has(ratio) ? ratio <= 0.09 && total <= 25e6 : undefined);
    add(s, 'node app: build time (`flick build`)', `${i.build_s} s`, '—', '—');
    if (has(i.redis_total_bytes)) {
      const r = i.redis_total_bytes / i.redis_source_image_bytes;
      add(s, 'Redis (Debian redis-server): microVM image, every layer', `${mb(i.redis_total_bytes)} (${(100 * r).toFixed(1)} %)`, `container image ${mb(i.redis_source_image_bytes)}`, '≤ 5 % of the container image', r <= 0.05);
    }
  }
  const c = latest.results.console?.results;
  if (c) {
    const s = 'web console (issue 16)';
    const ch = c.state_change_to_console_ms;
    const peer = c.state_change_to_http_client_ms;
    add(s, 'state change → console row, p95 (chromium)', `${ms(ch?.p95)} (p50 ${ms(ch?.p50)}, n ${ch?.n})`, `plain HTTP feed client p95 ${ms(peer?.p95)}`, '≤ 250 ms', has(ch?.p95) ? ch.p95 <= 250 : undefined);
    add(s, 'first load: JS + CSS (gzip)', mib(c.first_load?.js_css_gzip_bytes), '—', '≤ 300 KB', has(c.first_load?.js_css_gzip_bytes) ? c.first_load.js_css_gzip_bytes <= 300_000 : undefined);
    const ti = c.first_load?.interactive_ms;
    add(s, 'first load → interactive, p95 (cold cache)', `${ms(ti?.p95)} (p50 ${ms(ti?.p50)})`, '—', '≤ 1 s', has(ti?.p95) ? ti.p95 <= 1000 : undefined);
  }
  return out;
}

export function renderMarkdown(latest: Latest): string {
  const m = latest.machine;
  const lines = [
    '# Flick benchmarks: the latest run',
    '',
    `${latest.date} · accelerator **${latest.accel.toUpperCase()}**${latest.accel === 'tcg' ? ' (software CPU emulation: this host has no usable KVM, so every guest instruction is translated)' : ''} · ` +
      `${m.cpu}, ${m.cores} cores, ${(m.ram_bytes / 2 ** 30).toFixed(1)} GiB RAM, Linux ${m.kernel} (${m.os}) · load before the run ${m.load_before.map((x) => x.toFixed(2)).join(' ')}`,
    '',
    'Times are to the first byte of an HTTP answer, measured by a client on the host; "peer" is the same thing done another way on the same machine in the same run. The wake latency distributions: [wake-latency.svg](wake-latency.svg); every raw figure: [latest.json](latest.json).',
    '',
  ];
  const wakeN = latest.results.wake?.results?.warm_ms?.n;
  const densityN = latest.results.density?.results?.standby_instances;
  if ((wakeN !== undefined && wakeN < 30) || (densityN !== undefined && densityN < 100_000)) {
    lines.push(
      `**A small-N run** (wake: ${wakeN ?? 'n/a'} runs each, goal ≥ 30; density: ${densityN ?? 'n/a'} standby instances, goal 100,000): the figures are indicative; a full \`npm run bench\` on a quiet machine replaces them.`,
      '',
    );
  }
  let section = '';
  for (const r of rows(latest)) {
    if (r.section !== section) {
      section = r.section;
      lines.push('', `## ${section}`, '', '| measure | Flick | peer | goal | |', '| --- | --- | --- | --- | --- |');
    }
    lines.push(`| ${r.measure} | ${r.flick} | ${r.peer} | ${r.goal} | ${r.verdict === 'pass' ? '✅ pass' : r.verdict === 'miss' ? '❌ miss' : ''} |`);
  }
  const missing = ['wake', 'density', 'proxy', 'vmm', 'image'].filter((k) => latest.results[k] === undefined);
  if (missing.length > 0) lines.push('', `Not in this run: ${missing.join(', ')} (see the run's output for why).`);
  return `${lines.join('\n')}\n`;
}

/** One distribution on the chart: a label and its samples (ms). */
export interface Series {
  label: string;
  samples: number[];
  color: string;
}

function pctile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length))) - 1]!;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * A strip chart on a log-scale time axis: one row per series, every sample a
 * dot, a bar from p50 to p90, a tick at p99. Log scale because the figures
 * span three orders of magnitude (a 3 ms warm request, a 2 s cold wake).
 */
export function renderSvg(series: Series[], title: string): string {
  const shown = series.filter((s) => s.samples.length > 0);
  const all = shown.flatMap((s) => s.samples).filter((x) => x > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all, 1))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all, 10))));
  const left = 260;
  const width = 900;
  const plotW = width - left - 30;
  const rowH = 34;
  const top = 50;
  const height = top + rowH * shown.length + 50;
  const x = (v: number) => left + (plotW * (Math.log10(Math.max(v, lo)) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${left}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`);
  // Decade grid lines with 2× and 5× minor lines.
  for (let d = lo; d <= hi; d *= 10) {
    for (const m of [1, 2, 5]) {
      const v = d * m;
      if (v > hi) break;
      const xv = x(v).toFixed(1);
      out.push(`<line x1="${xv}" y1="${top - 8}" x2="${xv}" y2="${top + rowH * shown.length}" stroke="${m === 1 ? '#bbb' : '#eee'}"/>`);
      out.push(`<text x="${xv}" y="${top + rowH * shown.length + 16}" text-anchor="middle" fill="#555">${v >= 1000 ? `${v / 1000} s` : `${v} ms`}</text>`);
    }
  }
  shown.forEach((s, i) => {
    const cy = top + rowH * i + rowH / 2;
    const sorted = [...s.samples].sort((a, b) => a - b);
    const p50 = pctile(sorted, 50);
    const p90 = pctile(sorted, 90);
    const p99 = pctile(sorted, 99);
    out.push(`<text x="${left - 10}" y="${cy + 4}" text-anchor="end">${esc(s.label)}</text>`);
    out.push(`<rect x="${x(p50).toFixed(1)}" y="${cy - 9}" width="${Math.max(2, x(p90) - x(p50)).toFixed(1)}" height="18" fill="${s.color}" fill-opacity="0.25" stroke="${s.color}"/>`);
    out.push(`<line x1="${x(p99).toFixed(1)}" y1="${cy - 11}" x2="${x(p99).toFixed(1)}" y2="${cy + 11}" stroke="${s.color}" stroke-width="2"/>`);
    for (const v of sorted) out.push(`<circle cx="${x(v).toFixed(1)}" cy="${cy}" r="2.5" fill="${s.color}" fill-opacity="0.6"/>`);
    out.push(`<text x="${(x(p50) - 4).toFixed(1)}" y="${cy - 12}" text-anchor="end" font-size="10" fill="#333">p50 ${p50 < 10 ? p50.toFixed(1) : Math.round(p50)}</text>`);
  });
  out.push(`<text x="${left}" y="${height - 10}" fill="#555">dots: every run · box: p50 to p90 · bar: p99 · log scale</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
