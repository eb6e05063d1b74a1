package projection

// Personal data (docs/erasure.md): the projector folds events as they are
// decoded without keys, so a field marked kcqrs.personal reaches its tables
// as the sealed text, and the tables hold only ciphertext of it. The query
// server opens it when ServerConfig.OpenPersonal is set (with keys followed
// from the keys topic, topology.FollowKeys); an erased subject's value then
// reads "[erased]", with nothing for the projector to drop.

// openAccount returns a with its personal fields opened for the response.
func (s *Server) openAccount(a Account) Account {
	if s.cfg.OpenPersonal != nil {
		a.Owner = s.cfg.OpenPersonal("account", a.ID, a.Owner)
	}
	return a
}
