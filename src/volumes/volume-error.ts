// The errors of volumes: one code per way a volume operation can be refused.
import { FlickError } from '../errors.js';

export type VolumeErrorCode =
  | 'VOLUME_INVALID' // a bad name, size, mount path or attach spec (400)
  | 'VOLUME_NOT_FOUND' // no volume of that name (404)
  | 'VOLUME_EXISTS' // create or clone onto a name that is taken (409)
  | 'VOLUME_IN_USE' // rm, clone or a second attach while an instance holds it (409)
  | 'VOLUME_FAILED'; // a host tool (mkfs.ext4, qemu-img) failed (500)

export class VolumeError extends FlickError<VolumeErrorCode> {}
