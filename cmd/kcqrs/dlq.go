package main

func runDLQ(args []string) error { return nil }
