// The console log of an instance, following (GET …/log?follow=true), keeping the last 64 KiB.
import { useEffect, useRef, useState } from 'preact/hooks';
import { followLog } from './api';

const KEEP = 64 * 1024;

export function LogTail({ name }: { name: string }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [follow, setFollow] = useState(true);
  const pre = useRef<HTMLPreElement>(null);

  useEffect(() => {
    const ac = new AbortController();
    let buf = '';
    setText('');
    setError(undefined);
    followLog(name, (chunk) => {
      buf = (buf + chunk).slice(-KEEP);
      setText(buf);
    }, ac.signal).catch((e: unknown) => {
      if (!ac.signal.aborted) setError(e instanceof Error ? e.message : String(e));
    });
    return () => ac.abort();
  }, [name]);

  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);

  return (
    <div class="log">
      <div class="head">
        <h2 id="log-h">Console log</h2>
        <span class="spacer" />
        <label class="check">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> follow
        </label>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <pre ref={pre} tabIndex={0} aria-labelledby="log-h" data-testid="log">
        {text || '(no output yet)'}
      </pre>
    </div>
  );
}
