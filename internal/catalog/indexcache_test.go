package catalog

import (
	"strconv"
	"sync"
	"testing"
)

func TestIndexCache(t *testing.T) {
	var c indexCache[string]
	if _, ok := c.get("a", 1); ok {
		t.Fatal("hit in an empty cache")
	}
	c.put("a", 1, "one")
	if v, ok := c.get("a", 1); !ok || v != "one" {
		t.Fatalf("get(a, 1) = %q, %v; want one, true", v, ok)
	}
	if _, ok := c.get("a", 2); ok {
		t.Fatal("a value from index 1 served at index 2")
	}
	c.put("a", 2, "two")
	if v, ok := c.get("a", 2); !ok || v != "two" {
		t.Fatalf("get(a, 2) = %q, %v; want two, true", v, ok)
	}
}

func TestIndexCacheStartsOverWhenFull(t *testing.T) {
	var c indexCache[int]
	for i := range maxIndexed {
		c.put(strconv.Itoa(i), 1, i)
	}
	if _, ok := c.get("0", 1); !ok {
		t.Fatal("dropped an entry before the bound")
	}
	c.put("0", 2, 0) // a new index for a known key adds no key
	if _, ok := c.get("1", 1); !ok {
		t.Fatal("replacing a key's value counted as a new key")
	}
	c.put("one too many", 1, -1)
	if _, ok := c.get("1", 1); ok {
		t.Fatal("the cache kept growing past its bound")
	}
}

func TestIndexCacheConcurrent(t *testing.T) {
	var c indexCache[uint64]
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := uint64(1); i <= 2000; i++ {
				key := strconv.Itoa(int(i) % 50)
				c.put(key, i, i*uint64(g+1))
				if v, ok := c.get(key, i); ok && v%i != 0 {
					t.Errorf("value %d not derived from index %d", v, i)
					return
				}
			}
		})
	}
	wg.Wait()
}
