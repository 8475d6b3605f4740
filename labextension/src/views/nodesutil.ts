/** Pure helpers of the Nodes view. */

/** `[0,1,2,3,8,9]` -> `0-3,8-9`. */
export function compactRanges(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) {
      j++;
    }
    out.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return out.join(',');
}
