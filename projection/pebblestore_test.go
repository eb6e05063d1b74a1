package projection

import (
	"testing"

	"github.com/lovoo/goka/storage"

	"github.com/kcqrs/kcqrs/projection/storagetest"
)

func TestPebbleStorageConformance(t *testing.T) {
	storagetest.Run(t, func(dir string) storage.Storage { return NewPebbleStorage(dir, nil) })
}

func TestPebbleStorageRefusesNilAndClosed(t *testing.T) {
	s := NewPebbleStorage(t.TempDir(), nil)
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("k", nil); err == nil {
		t.Fatal("Set(nil) accepted: Get could not tell it from a missing key")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("k"); err != ErrStorageClosed {
		t.Fatalf("Get after Close = %v, want ErrStorageClosed", err)
	}
}
