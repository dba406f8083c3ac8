/** One measured figure, ideally next to a peer's figure from the same run. */
export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  peer?: string;
  peerValue?: number;
  /** Our figure relative to the peer's, stated so that > 1 is better for us unless `note` says otherwise. */
  ratio?: number;
  note?: string;
}
