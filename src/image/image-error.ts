// Errors of the image pipeline (Dockerfile checks, buildah, specialization,
// packing, the local OCI layout). User errors name the Dockerfile line.
import { FlickError } from '../errors.js';

export type ImageErrorCode =
  | 'DOCKERFILE_INVALID' // syntax or semantic error in the Dockerfile (names the line)
  | 'DOCKERFILE_NOT_FOUND'
  | 'CONTEXT_INVALID' // the build context is missing or empty
  | 'COPY_SOURCE_MISSING' // a COPY/ADD source is not in the context (names the line)
  | 'BASE_IMAGE_MISSING' // a FROM image cannot be found or pulled (names the line)
  | 'NO_COMMAND' // the final image has neither ENTRYPOINT nor CMD
  | 'BUILD_STEP_FAILED' // a Dockerfile step failed inside buildah (names the line)
  | 'APP_EXITED' // the app exited during the build's traced run (carries its output)
  | 'USER_UNKNOWN' // USER names a user or group the image's /etc/passwd or /etc/group lacks
  | 'TOOL_FAILED' // a helper program (buildah, mksquashfs, debootstrap) failed
  | 'IMAGE_NOT_FOUND' // no image by that name in the local layout
  | 'IMAGE_INVALID' // a stored image is malformed
  | 'INVALID_REFERENCE'; // a NAME[:TAG] the layout cannot hold

export class ImageError extends FlickError<ImageErrorCode> {}
