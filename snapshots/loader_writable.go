package snapshots

import (
	"errors"

	"github.com/cockroachdb/pebble/v2/objstorage"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// tableWritable writes a Loader's table file through a large buffer.
// Pebble's own file writable buffers 4 KiB, one write system call per data
// block: a 4 MiB run took about a thousand, and the write calls were the
// largest part of a restore's CPU (BENCHMARKS.md). The table's layout is
// unchanged (4 KiB blocks); only the writes are fewer. Finish syncs the
// file before the table is ingested, as Pebble's does.
type tableWritable struct {
	f   vfs.File
	buf []byte
}

var _ objstorage.Writable = (*tableWritable)(nil)

// tableWriteBuffer is the size of one write of a table file.
const tableWriteBuffer = 512 << 10

func newTableWritable(f vfs.File, buf []byte) *tableWritable {
	return &tableWritable{f: f, buf: buf[:0]}
}

// Write copies p into the buffer, writing the buffer out when full.
func (w *tableWritable) Write(p []byte) error {
	for len(p) > 0 {
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return err
			}
		}
		n := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:n]...)
		p = p[n:]
	}
	return nil
}

func (w *tableWritable) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Finish writes what is buffered, syncs and closes the file.
func (w *tableWritable) Finish() error {
	err := w.flush()
	if err == nil {
		err = w.f.Sync()
	}
	return errors.Join(err, w.f.Close())
}

// Abort closes the file (the Loader removes it).
func (w *tableWritable) Abort() { _ = w.f.Close() }
