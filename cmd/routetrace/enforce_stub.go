package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/routetrace/routetrace/policy"
)

// Temporary, until the enforce and repair packages merge.
func releaseEnforcement(c *cli.Context) error { return errors.New("todo") }
func printAutoPolicy(c *cli.Context) error    { return errors.New("todo") }
func printPolicyCheck(c *cli.Context, p *policy.Policy, m policy.Mode, why string) error {
	return errors.New("todo")
}
func blockSupported() error                          { return errors.New("todo") }
func setupBlock(c *cli.Context, j *judgeStage) error { return errors.New("todo") }
