// Sign-in with the host token (POSTed once, never stored by the page) or a link from `flick console`.
import { useState } from 'preact/hooks';
import { ApiError, login } from './api';

export function Login(props: { error: string | undefined; onSignedIn(csrf: string): void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(props.error);
  const [busy, setBusy] = useState(false);
  return (
    <main class="login">
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          try {
            const csrf = await login(token);
            setToken('');
            props.onSignedIn(csrf);
          } catch (err) {
            setError(err instanceof ApiError ? err.message : String(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <h1>flick</h1>
        <p>Sign in with the host token (in <code>&lt;data-dir&gt;/token</code>), or run <code>flick console</code> for a one-time link.</p>
        <label for="token">Host token</label>
        <input id="token" name="token" type="password" autocomplete="off" required value={token} onInput={(e) => setToken(e.currentTarget.value)} autoFocus />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
