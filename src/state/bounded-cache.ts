// lru-cache's `max` allocates that many slots when the cache is made (key, value and link arrays):
// ~4.5 MB of empty slots in an idle gateway for its dozen caches. Bounded by `maxSize` with every
// entry of size 1 instead, a cache holds the same number of entries and allocates as it fills.
import { LRUCache } from 'lru-cache';

type Options<K extends {}, V extends {}> = Omit<LRUCache.Options<K, V, unknown>, 'max' | 'maxSize' | 'sizeCalculation'>;

/** An LRU cache of at most `entries` entries (at least 1). */
export function boundedCache<K extends {}, V extends {}>(entries: number, options: Options<K, V> = {}): LRUCache<K, V> {
  return new LRUCache<K, V>({ ...options, maxSize: Math.max(1, entries), sizeCalculation: () => 1 } as LRUCache.Options<K, V, unknown>);
}
