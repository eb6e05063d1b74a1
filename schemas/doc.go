// Package schemas holds kcqrs's Avro schemas and turns Go values into Avro
// bytes and back.
//
// # Schemas
//
// The schemas are .avsc files embedded in the binary: kcqrs/ holds the
// envelopes (kcqrs.Reply, kcqrs.Event, kcqrs.Snapshot, whose Go forms are in
// package wire), account/ and folder/ the example domains. Load reads a
// directory of them into a Set; LoadEnvelopes, LoadAccount and LoadFolder load
// the embedded ones, and Merge combines sets. Each file holds one record
// schema and is self-contained: a named type it uses is defined inline, even
// when another file defines it too (Snapshot.avsc repeats kcqrs.ReplyStatus). A Set
// holds only the top-level records, and Load refuses a set in which a named
// type has two different definitions, so the copies cannot drift apart.
// Every codec is built once, when its set is loaded.
//
// # Single-object encoding
//
// Encode writes the Avro single-object encoding of the specification:
//
//	0xC3 0x01 | fingerprint (8 bytes, little-endian) | record (Avro binary)
//
// The fingerprint is the CRC-64-AVRO (Rabin) fingerprint of the schema's
// Parsing Canonical Form, the form without docs, defaults and aliases. Avro
// binary carries no field names or type tags: the bytes of a Deposit can be
// read as a Withdraw without any error. The header makes each Kafka record
// name the exact schema it was written with, at a cost of ten bytes and
// without a schema registry:
//
//   - Decode refuses data written with another schema (a *FingerprintError)
//     instead of misreading it;
//   - a reader that holds many schemas finds the writer's one with
//     Set.ByFingerprint(Fingerprint(data));
//   - any change to a schema that changes its binary form changes its
//     fingerprint, so old records stay recognisable after a schema evolves
//     (see Schema evolution below).
//
// Changing a doc or a default leaves the fingerprint alone; testdata/golden
// pins the encoded bytes of every record so an accidental change fails a test.
//
// The fingerprint is computed by this package from the canonical form the
// specification defines, so it matches Java's and Python's. goavro's own
// (Codec.Avro().Rabin) agrees for ordinary schemas, the embedded ones
// included, but not for a "namespace" attribute on a nested type or a
// primitive with a known logicalType, and for a recursive reference by short
// name it even changes from run to run with Go's map order: data written by
// one run would be refused by the next.
//
// # Schema evolution
//
// Every released version of a record stays in the schema directory: the
// current one as Name.avsc, older ones as history/Name.v1.avsc,
// history/Name.v2.avsc, ... (HistoryDir); the current version is one more
// than the highest in history/. Load reads both; old fingerprints are found
// by ByFingerprint, and Codec.Decode of the current record reads data of its
// older versions by the Avro specification's schema resolution, which goavro
// lacks (its SCHEMA-EVOLUTION.md says so) and resolve.go implements on
// goavro's native form: fields matched by name, a reader's field missing in
// the writer filled from its default, a writer's field the reader lacks
// dropped, promotions int → long → float → double and string ↔ bytes, enum
// symbols the reader lacks mapped to its default, unions on either side
// resolved branch by branch, nested records, arrays and maps recursively,
// and a renamed field or nested type matched by its "aliases".
// What resolution cannot express (a record renamed or split, a field whose
// meaning changed) an Upcaster does: a function from version n of a record
// to what it means at n+1, on generic records; Set.Upcasting chains them,
// resolving in between, and Upcasting.Check (and Set.Check) lists every old
// version the current schemas cannot read, naming files and fields. Unknown
// fingerprints are an *UnknownSchemaError; incompatible data a *ResolveError.
//
// Confluent translates between this encoding and the Confluent Schema
// Registry wire format (magic byte 0, schema id), for users who run one.
//
// # JSON
//
// EncodeJSON and DecodeJSON use the Avro JSON encoding of the same schema, so
// a JSON command is validated exactly like an Avro one: a missing field
// without a default, an unknown field or a value of the wrong type is an error
// that names the field. For records without unions or bytes the Avro JSON
// encoding is plain JSON. EncodeJSON writes fields in schema order.
//
// # Mapping Go structs to records
//
// The mapping of a Go struct type onto a record is worked out once per type
// (Bind, or the first Encode or Decode) and cached, in two forms:
//
//   - a compiled codec (compiled.go) that writes Avro binary straight from the
//     struct's memory and reads it straight into it, with no goavro native
//     form in between: Encode, and Decode of data written with the current
//     schema, use it. It allocates only what the value keeps (the output
//     buffer; decoded strings, bytes, slices, maps and pointers).
//   - converters to and from goavro's native form (reflect.go), for JSON
//     (EncodeJSON, DecodeJSON), for data written with an older version of the
//     record (resolution works on the native form), for ToNative/FromNative,
//     and for the rare type the compiler leaves alone (a struct passed by
//     value whose only field is a pointer).
//
// Both give the same result: the tests compare the compiled bytes with
// goavro's BinaryFromNative on random values of every record
// (TestCompiledMatchesGoavro) and both decoders on corrupted and fuzzed
// input (FuzzCompiledDecode). The rules of the mapping:
//
//   - A Go field maps to the Avro field named by its `avro:"name"` tag;
//     without a tag, to the Avro field whose name equals the Go field's name
//     ignoring case (CommandID ↔ commandId). `avro:"-"` and unexported fields
//     are ignored.
//   - Every Avro field needs a Go field and every other exported Go field
//     needs an Avro field; Bind reports every violation at once.
//   - Kinds: boolean ↔ bool; int ↔ any signed Go integer (checked for
//     overflow both ways); long ↔ int64 or int; float ↔ float32 or float64;
//     double ↔ float64; string and enum ↔ any string kind (named types like
//     wire.Status included; an enum value must be one of its symbols, so the
//     empty string is not a valid Status); bytes ↔ []byte; fixed ↔ [N]byte
//     or []byte; array ↔ slice; map ↔ map with string keys; record ↔ struct
//     (an empty struct for a record without fields); ["null", T] ↔ *T, with
//     nil for null; any other union ↔ a struct of one pointer field per
//     non-null branch, at most one set, all nil for null (matched by avro
//     tag or by name, see union.go). goavro's logical types (timestamps,
//     decimals) are not supported; other logical types are their base type.
//   - Decoding gives nil for an empty array, map or bytes value.
//   - Decode never panics on bad input. Before either decoder sees the
//     bytes a pre-scan checks them against the schema, because goavro
//     allocates as many slots as an array's block count claims; the compiled
//     decoder also bounds every length and block count by the bytes left.
//   - A float32 NaN is written with its quiet bit set, as goavro's path
//     (through float64) writes it.
package schemas
