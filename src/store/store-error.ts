// Errors of the state store.
import { FlickError } from '../errors.js';

export type StoreErrorCode =
  | 'NAME_TAKEN' // another instance has this name
  | 'NOT_FOUND'
  | 'SCHEMA_TOO_NEW' // the database was written by a newer flickd
  | 'CORRUPT_RECORD';

export class StoreError extends FlickError<StoreErrorCode> {}
