package main

import (
	"os"
	"testing"
)

// asMain, set in a child's environment, makes the test binary run as the
// cpis command itself: cpis bench starts its server (and its gin ceiling)
// from its own executable, which in a test is this binary.
const asMain = "CPIS_TEST_RUN_AS_CPIS"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
