package topology_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/client"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/wire"
)

// bombCompressor hands the producer a prepared zstd stream instead of
// compressing what it is given: one record whose value is far larger than
// anything a client could produce uncompressed.
type bombCompressor struct{ stream []byte }

func (b bombCompressor) Compress(_ *bytes.Buffer, _ []byte, _ ...kgo.CompressFlag) ([]byte, kgo.CompressionCodecType) {
	return b.stream, kgo.CodecZstd
}

// zstdBomb is the zstd stream of a record batch's records section holding
// one record with the given key and a value of n zero bytes, written
// without ever holding the value in memory.
func zstdBomb(t *testing.T, key []byte, n int64) []byte {
	t.Helper()
	var body []byte
	body = append(body, 0)                            // attributes
	body = binary.AppendVarint(body, 0)               // timestamp delta
	body = binary.AppendVarint(body, 0)               // offset delta
	body = binary.AppendVarint(body, int64(len(key))) // key
	body = append(body, key...)
	body = binary.AppendVarint(body, n) // value length; the value follows
	trailer := binary.AppendVarint(nil, 0)
	length := int64(len(body)) + n + int64(len(trailer))
	var out bytes.Buffer
	enc, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) {
		if _, err := enc.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	write(binary.AppendVarint(nil, length))
	write(body)
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(zeros)) {
		write(zeros[:min(left, int64(len(zeros)))])
	}
	write(trailer)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// A record batch that decompresses past what the consumer accepts
// (franz-go's MaxDecompressBatchBytes, 1 GiB; the broker checks only the
// compressed size) stopped its partition for good: franz-go stops fetching
// a partition at such a batch until it is moved past it, and the processor
// only logged the fetch error, so every later command of the partition
// waited forever. The batch must be skipped with a dead-letter pointer to
// it, and the partition go on.
func TestDecompressionBombIsSkippedAndBlocksNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// The bound lowered from franz-go's 1 GiB, so that the test (and -race)
	// does not decompress a GiB; the processor sees the same error.
	const bound = 32 << 20
	h.StartProcessor("w0", "", func(c *topology.Config) {
		c.SessionClientOpts = append(c.SessionClientOpts, kgo.MaxDecompressBatchBytes(bound))
	})
	part := topology.PartitionFor([]byte("bomb"), partitions)
	stream := zstdBomb(t, []byte("bomb"), bound+1<<20)
	// The producer keeps a compressed batch only when it is smaller than
	// the records it was given.
	rec := &kgo.Record{Topic: "commands", Partition: part, Key: []byte("bomb"), Value: []byte(strings.Repeat("x", len(stream)+1024))}
	produceRaw(t, h, []kgo.Opt{kgo.WithCompressor(bombCompressor{stream}), kgo.ProducerBatchCompression(kgo.ZstdCompression())}, rec)
	bombAt := rec.Offset

	// A command after it on the same partition is answered.
	same := samePartitionID(t, "after-bomb", part)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := h.Client().Send(ctx, cmd("account", same, "OpenAccount", `{"owner":"A","currency":"EUR"}`))
	if err != nil {
		t.Fatalf("a command after the bomb on its partition got no reply: %v", err)
	}
	wantStatus(t, rep, wire.StatusAccepted, 1)

	// The bomb is dead-lettered as a pointer: where it is, and why.
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, r := range h.ReadTopic("commands-dlq") {
			if header(r, wire.HeaderDLQPartition) == fmt.Sprint(part) && header(r, wire.HeaderDLQOffset) == fmt.Sprint(bombAt) {
				if header(r, wire.HeaderDLQTopic) != h.Topic("commands") || !strings.Contains(header(r, wire.HeaderDLQError), "decompress") || len(r.Value) != 0 {
					t.Fatalf("dead letter of the bomb: headers %v, %d value bytes", r.Headers, len(r.Value))
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter points at the bomb (partition %d, offset %d)", part, bombAt)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// samePartitionID returns an id starting with prefix on partition part.
func samePartitionID(t *testing.T, prefix string, part int32) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if topology.PartitionFor([]byte(id), partitions) == part {
			return id
		}
	}
	t.Fatalf("no id for partition %d", part)
	return ""
}

// skipSignal is a log handler that reports the processor's skip of an
// undecompressable batch on a channel.
type skipSignal struct {
	slog.Handler
	skipped chan struct{}
}

func (s skipSignal) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "decompresses past") {
		select {
		case s.skipped <- struct{}{}:
		default:
		}
	}
	return s.Handler.Handle(ctx, r)
}

func (s skipSignal) WithAttrs(a []slog.Attr) slog.Handler {
	return skipSignal{s.Handler.WithAttrs(a), s.skipped}
}

func (s skipSignal) WithGroup(n string) slog.Handler {
	return skipSignal{s.Handler.WithGroup(n), s.skipped}
}

// A bomb found by a poll inside a transaction (under load, while the
// transaction takes more records) moved the session past it at once, so that
// transaction committed the offset past the bomb, while its dead-letter
// pointer waited for the next transaction: a worker stopped (or a partition
// revoked) in between lost the pointer for good, and the skipped commands
// left no trace. Whatever poll finds it, the transaction that commits the
// offset past a bomb carries its pointer. The worker is stopped as soon as
// it skips the bomb, with commands flowing to the other partitions so that
// polls inside a transaction are the common case; a restarted worker must
// then dead-letter the bomb (it sees it again unless its offset was
// committed, and then the pointer must have been committed with it).
func TestDecompressionBombPointerCommitsWithTheSkip(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const bound = 32 << 20
	part := topology.PartitionFor([]byte("bomb"), partitions)
	skipped := make(chan struct{}, 1)
	opts := func(c *topology.Config) {
		c.SessionClientOpts = append(c.SessionClientOpts, kgo.MaxDecompressBatchBytes(bound))
		c.CommitInterval = time.Second // transactions long enough to poll inside them
		c.Logger = slog.New(skipSignal{c.Logger.Handler(), skipped})
	}
	w := h.StartProcessor("w0", "", opts)
	cl := h.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Commands flow to the other partitions until the worker stops.
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			default:
			}
			id := fmt.Sprintf("load-%d", i)
			if topology.PartitionFor([]byte(id), partitions) == part {
				continue
			}
			cl.SendAsync(ctx, cmd("account", id, "OpenAccount", `{"owner":"L","currency":"EUR"}`), func(wire.Reply, client.Trace, error) {})
			time.Sleep(2 * time.Millisecond) // a backlog the restarted worker clears quickly
		}
	}()
	time.Sleep(200 * time.Millisecond)
	stream := zstdBomb(t, []byte("bomb"), bound+1<<20)
	rec := &kgo.Record{Topic: "commands", Partition: part, Key: []byte("bomb"), Value: []byte(strings.Repeat("x", len(stream)+1024))}
	produceRaw(t, h, []kgo.Opt{kgo.WithCompressor(bombCompressor{stream}), kgo.ProducerBatchCompression(kgo.ZstdCompression())}, rec)
	bombAt := rec.Offset
	select {
	case <-skipped:
	case <-ctx.Done():
		t.Fatal("the worker never skipped the bomb")
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	close(stopLoad)
	<-loadDone

	h.StartProcessor("w0", "", opts)
	same := samePartitionID(t, "after-bomb", part)
	rep, err := cl.Send(ctx, cmd("account", same, "OpenAccount", `{"owner":"A","currency":"EUR"}`))
	if err != nil {
		t.Fatalf("a command after the bomb on its partition got no reply: %v", err)
	}
	wantStatus(t, rep, wire.StatusAccepted, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, r := range h.ReadTopic("commands-dlq") {
			if header(r, wire.HeaderDLQPartition) == fmt.Sprint(part) && header(r, wire.HeaderDLQOffset) == fmt.Sprint(bombAt) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter points at the bomb (partition %d, offset %d): its offset was committed without its pointer", part, bombAt)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
