package account_test

import (
	"fmt"

	"github.com/kcqrs/kcqrs/aggregates"
	"github.com/kcqrs/kcqrs/aggregates/account"
)

// The runtime's view of a command: fold the history with Evolve, then Decide.
func ExampleDecide() {
	var s account.Account
	for _, e := range []aggregates.Event{
		account.AccountOpened{Owner: "ann", Currency: "EUR"},
		account.MoneyDeposited{Amount: 100, Balance: 100},
	} {
		s = account.Evolve(s, e)
	}

	events, err := account.Decide(s, account.Withdraw{Amount: 30})
	fmt.Printf("%+v %v\n", events, err)

	_, err = account.Decide(s, account.Withdraw{Amount: 130})
	if rej, ok := aggregates.AsRejection(err); ok {
		fmt.Println(rej.Code)
	}
	// Output:
	// [{Amount:30 Balance:70}] <nil>
	// insufficient_funds
}
