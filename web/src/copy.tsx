// A shell command with a button that copies it.
import { useState } from 'preact/hooks';

export function CopyCommand({ command, label = 'Copy' }: { command: string; label?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="cmd">
      <code data-testid="cli-command">{command}</code>
      <button
        type="button"
        onClick={async () => {
          try {
            await navigator.clipboard.writeText(command);
          } catch {
            // No clipboard (plain http off localhost): select the text so Ctrl+C takes it.
            const range = document.createRange();
            const code = document.querySelector('[data-testid="cli-command"]');
            if (code) {
              range.selectNodeContents(code);
              getSelection()?.removeAllRanges();
              getSelection()?.addRange(range);
            }
          }
          setCopied(true);
          setTimeout(() => setCopied(false), 1500);
        }}
      >
        {copied ? 'Copied' : label}
      </button>
    </div>
  );
}
