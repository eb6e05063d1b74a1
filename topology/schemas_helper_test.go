package topology_test

import "github.com/kcqrs/kcqrs/schemas"

func schemasAccount() (*schemas.Set, error) { return schemas.LoadAccount() }
