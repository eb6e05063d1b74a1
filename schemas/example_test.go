package schemas_test

import (
	"fmt"
	"reflect"

	"github.com/kcqrs/kcqrs/schemas"
	"github.com/kcqrs/kcqrs/wire"
)

func Example() {
	envelopes, err := schemas.LoadEnvelopes()
	if err != nil {
		panic(err)
	}
	replies, err := envelopes.Codec("kcqrs.Reply")
	if err != nil {
		panic(err)
	}
	// Check the Go type once, at start.
	if err := replies.Bind(reflect.TypeOf(wire.Reply{})); err != nil {
		panic(err)
	}

	data, err := replies.Encode(wire.Reply{CommandID: "c1", Status: wire.StatusAccepted, Version: 1, Events: 1})
	if err != nil {
		panic(err)
	}
	fmt.Printf("header: % x\n", data[:schemas.HeaderLen])

	// A reader that holds many schemas finds the writer's by fingerprint.
	fp, err := schemas.Fingerprint(data)
	if err != nil {
		panic(err)
	}
	c, _ := envelopes.ByFingerprint(fp)
	var r wire.Reply
	if err := c.Decode(data, &r); err != nil {
		panic(err)
	}
	fmt.Println(c.Name(), r.CommandID, r.Status, r.Version)

	js, _ := replies.EncodeJSON(r)
	fmt.Println(string(js))
	// Output:
	// header: c3 01 b9 01 e4 01 cd 44 ed 34
	// kcqrs.Reply c1 ACCEPTED 1
	// {"commandId":"c1","aggregateType":"","aggregateId":"","status":"ACCEPTED","version":1,"events":1,"code":"","message":"","duplicate":false}
}
