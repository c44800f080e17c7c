// Errors of the state store.
import { FlickError } from '../errors.js';

export type StoreErrorCode =
  | 'NAME_TAKEN' // another instance has this name
  | 'RECORD_NOT_FOUND' // no record with this id: removed meanwhile (a system error, never a 404)
  | 'SCHEMA_TOO_NEW' // the database was written by a newer flickd
  | 'CORRUPT_RECORD';

export class StoreError extends FlickError<StoreErrorCode> {}
