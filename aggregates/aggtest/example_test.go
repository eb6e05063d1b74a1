package aggtest_test

import (
	"fmt"

	"github.com/kcqrs/kcqrs/aggregates/account"
	"github.com/kcqrs/kcqrs/aggregates/aggtest"
)

// printT prints what the fixture reports, so that the examples can show it.
// In a test, pass the *testing.T instead.
type printT struct{}

func (printT) Helper()                           {}
func (printT) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }
func (printT) Fatalf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func ExampleFor() {
	var t aggtest.TestingT = printT{} // in a test: the *testing.T

	aggtest.For(t, account.Type).
		Given(
			account.AccountOpened{Owner: "ann", Currency: "EUR"},
			account.MoneyDeposited{Amount: 100, Balance: 100},
		).
		When(account.Withdraw{Amount: 30}).
		Then(account.MoneyWithdrawn{Amount: 30, Balance: 70}).
		ThenState(account.Account{Status: "open", Owner: "ann", Currency: "EUR", Balance: 70}).
		ThenVersion(3)

	aggtest.For(t, account.Type).
		Given(account.AccountOpened{Owner: "ann", Currency: "EUR"}).
		When(account.Withdraw{Amount: 30}).
		ThenReject(account.CodeInsufficientFunds)

	fmt.Println("no failures")
	// Output: no failures
}

// A failure names the step, shows the difference field by field and repeats
// the scenario.
func ExampleFor_failure() {
	var t aggtest.TestingT = printT{}

	aggtest.For(t, account.Type).
		Given(
			account.AccountOpened{Owner: "ann", Currency: "EUR"},
			account.MoneyDeposited{Amount: 100, Balance: 100},
		).
		When(account.Withdraw{Amount: 30}).
		Then(account.MoneyWithdrawn{Amount: 30, Balance: 60})
	// Output:
	// aggtest: Then: events differ
	//     events[0].Balance: want 60, got 70
	//   want: account.MoneyWithdrawn{Amount:30, Balance:60}
	//   got:  account.MoneyWithdrawn{Amount:30, Balance:70}
	//   scenario (account):
	//     given: account.AccountOpened{Owner:"ann", Currency:"EUR"}
	//            account.MoneyDeposited{Amount:100, Balance:100}
	//     when:  account.Withdraw{Amount:30}
}

// Fixtures are immutable, so one with a common history can be extended by
// several scenarios.
func ExampleFixture_Given() {
	var t aggtest.TestingT = printT{}

	opened := aggtest.For(t, account.Type).
		Given(account.AccountOpened{Owner: "ann", Currency: "EUR"})

	opened.When(account.CloseAccount{}).
		Then(account.AccountClosed{})
	opened.Given(account.MoneyDeposited{Amount: 5, Balance: 5}).
		When(account.CloseAccount{}).
		ThenReject(account.CodeNonzeroBalance)

	// Feed the events of one command into the history of the next.
	r := opened.When(account.Deposit{Amount: 40})
	r = opened.Given(r.Events()...).When(account.Withdraw{Amount: 15})
	fmt.Println(r.State().Balance, r.Version())
	// Output: 25 3
}

// The Result's accessors serve assertions the Then methods do not cover.
func ExampleResult_Err() {
	var t aggtest.TestingT = printT{}

	err := aggtest.For(t, account.Type).
		When(account.OpenAccount{Owner: "ann", Currency: "euro"}).
		ThenReject(account.CodeInvalidCurrency).
		Err()
	fmt.Println(err)
	// Output: invalid_currency: currency "euro" is not three upper-case letters (ISO 4217)
}
