package main

import (
	"fmt"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/shred"
)

// bindPersonal declares the master key of personal data (docs/erasure.md).
func bindPersonal(s *config.Set, st *settings) {
	s.String(&st.masterKeyFile, "master-key-file", "", "file holding the master key of personal data (32 bytes in hex or base64): fields marked kcqrs.personal are stored encrypted per aggregate and can be erased (kcqrs erase); default: none, or the KCQRS_MASTER_KEY variable")
	s.String(&st.cfg.Topics.Keys, "keys-topic", "", "compacted topic of the data keys of personal data (default kcqrs-keys when a master key is set)")
	s.Secret(&st.masterKey, "master-key", "the master key itself (prefer the KCQRS_MASTER_KEY variable, or --master-key-file, to the flag)")
}

// personalKey sets topology.Config.Personal from the master key settings.
func personalKey(st *settings) error {
	var text string
	switch {
	case st.masterKeyFile != "" && st.masterKey != "":
		return fmt.Errorf("--master-key-file and --master-key (KCQRS_MASTER_KEY) both set: give one")
	case st.masterKeyFile != "":
		mk, err := shred.LoadMasterKey(st.masterKeyFile)
		if err != nil {
			return fmt.Errorf("--master-key-file: %w", err)
		}
		st.cfg.Personal = mk
		return nil
	case st.masterKey != "":
		text = st.masterKey
	default:
		return nil
	}
	key, err := shred.ParseMasterKey(text)
	if err != nil {
		return fmt.Errorf("--master-key: %w", err)
	}
	mk, err := shred.NewMasterKey(key)
	if err != nil {
		return err
	}
	st.cfg.Personal = mk
	return nil
}
