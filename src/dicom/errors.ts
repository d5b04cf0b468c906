import { ReasonCode } from '../types/pipeline';

/** The only error decode lets out: a reason code for the dashboard and a message for a person. */
export class DecodeError extends Error {
  constructor(public reason: ReasonCode, message: string) {
    super(message);
    this.name = 'DecodeError';
  }
}
