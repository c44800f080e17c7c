// The host's images: the microVM image's own size beside the container image it was built from.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, images, type ImageView } from './api';
import { bytes } from './format';

export function ImagesView() {
  const [list, setList] = useState<ImageView[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    images().then((r) => setList(r.images), (e: unknown) => setError(e instanceof ApiError ? e.message : String(e)));
  }, []);
  return (
    <section aria-labelledby="images-h">
      <div class="head">
        <h1 id="images-h">Images</h1>
        {list && <span class="count">{list.length}</span>}
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {list && list.length === 0 && <p class="empty">No images. Build one with <code>flick build</code> and push it with <code>flick push</code>.</p>}
      {list && list.length > 0 && (
        <div class="table-wrap">
          <table class="cards-on-phone images">
            <thead>
              <tr>
                <th scope="col">Image</th>
                <th scope="col" class="num">microVM image</th>
                <th scope="col" class="num">Container image</th>
                <th scope="col" class="num">Ratio</th>
                <th scope="col">Digest</th>
              </tr>
            </thead>
            <tbody>
              {list.map((i) => (
                <tr key={i.ref} data-ref={i.ref}>
                  <th scope="row" data-label="Image">{i.ref}{!i.ready && <span class="sub"> (preparing)</span>}<div class="sub">{i.source_image ?? ''}</div></th>
                  <td class="num" data-label="microVM image" title={i.total_bytes ? `${bytes(i.total_bytes)} with the shared kernel and initrd` : ''}>{bytes(i.size_bytes)}</td>
                  <td class="num" data-label="Container image">{bytes(i.source_image_bytes)}</td>
                  <td class="num" data-label="Ratio">{i.size_bytes && i.source_image_bytes ? `${((100 * i.size_bytes) / i.source_image_bytes).toFixed(1)} %` : '–'}</td>
                  <td data-label="Digest"><code>{i.digest.slice(7, 19)}</code></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
