/**
 * Commander option parser for a flag given once per value (`--exclude a --exclude b`). A
 * variadic option (`<pattern...>`) would also swallow the positional arguments after it.
 */
export function repeatable(value: string, previous: string[]): string[] {
  return [...previous, value];
}
