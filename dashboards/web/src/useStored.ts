import { useCallback, useState } from "react";

/** A piece of state remembered in localStorage under `key`, read back through `parse`. */
export function useStored<T extends string>(key: string, parse: (raw: string | null) => T): [T, (v: T) => void] {
  const [value, setValue] = useState<T>(() => {
    try {
      return parse(window.localStorage.getItem(key));
    } catch {
      return parse(null);
    }
  });
  const set = useCallback(
    (v: T) => {
      setValue(v);
      try {
        window.localStorage.setItem(key, v);
      } catch {
        // storage refused: kept for this page only
      }
    },
    [key],
  );
  return [value, set];
}
