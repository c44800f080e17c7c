// The wake-latency histogram of one instance: the controller's buckets
// (≤1 ms … ≤10 s, +Inf), hot and cold wakes side by side, drawn with uPlot.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import type { HistogramView } from './api';

function perBucket(h: HistogramView): number[] {
  const all = [...h.cumulative, h.count];
  return all.map((c, i) => c - (i === 0 ? 0 : all[i - 1]!));
}

export function bucketLabels(bounds: number[]): string[] {
  const fmt = (b: number) => (b >= 1000 ? `${b / 1000}s` : `${b}`);
  return [...bounds.map(fmt), `>${fmt(bounds.at(-1) ?? 0)}`];
}

export function WakeHistogram({ hot, cold }: { hot: HistogramView; cold: HistogramView }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const labels = bucketLabels(hot.buckets_ms);
  const data: uPlot.AlignedData = [labels.map((_, i) => i), perBucket(hot), perBucket(cold)];

  useEffect(() => {
    const el = box.current!;
    const width = () => Math.max(260, el.clientWidth);
    const bars = uPlot.paths.bars!({ size: [0.4, 40], align: 0 });
    const opts: uPlot.Options = {
      width: width(),
      height: 200,
      legend: { show: true },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: { x: { time: false, range: [-0.6, labels.length - 0.4] }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      axes: [
        { values: (_u, splits) => splits.map((s) => labels[s] ?? ''), splits: () => labels.map((_, i) => i), gap: 4, size: 46, label: 'latency bucket (ms, upper bound)', labelSize: 18, stroke: 'currentColor', grid: { show: false } },
        { label: 'wakes', stroke: 'currentColor', size: 40, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], grid: { stroke: 'rgba(128,128,128,0.2)' } },
      ],
      series: [
        { label: 'bucket', value: (_u, v) => (v === null ? '–' : `≤ ${labels[v] ?? ''}`) },
        { label: 'hot', fill: 'rgba(230, 120, 20, 0.75)', stroke: 'rgb(230, 120, 20)', paths: bars, points: { show: false } },
        { label: 'cold', fill: 'rgba(40, 110, 220, 0.75)', stroke: 'rgb(40, 110, 220)', paths: uPlot.paths.bars!({ size: [0.4, 40], align: 1 }), points: { show: false } },
      ],
    };
    plot.current = new uPlot(opts, data, el);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: width(), height: 200 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData(data);
  });

  return <div ref={box} class="chart" role="img" aria-label={`Wake latency histogram: ${hot.count} hot and ${cold.count} cold wakes`} />;
}
