/**
 * Thrown by an observer given NaN or an infinity. The calibration runner turns it into a
 * UserError naming the tensor and the samples; direct callers (weights) name their tensor.
 */
export class NonFiniteError extends Error {
  constructor(readonly nan: boolean) {
    super(nan ? 'the data contains NaN' : 'the data contains an infinite value');
    this.name = 'NonFiniteError';
  }
}
