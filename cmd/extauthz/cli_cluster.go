package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

const clusterUsage = `Usage: extauthz cluster <command> [flags] [args]

Commands (of an admin cluster started with --raft-peers; any member answers):
  status                 every member: raft state, term, applied index, last contact
  add ID HOST:PORT       add a voter (its raft address); start it first, with --raft-peers
                         listing the current members and not itself
  remove ID              remove a member (a dead one, or one to retire)

Flags are those of "extauthz keys"; run "extauthz cluster status --help".
`

// cliCluster is GET /api/v1/cluster's answer.
type cliCluster struct {
	Leader  string `json:"leader"`
	Members []struct {
		ID       string `json:"id"`
		Addr     string `json:"addr"`
		Suffrage string `json:"suffrage"`
		Error    string `json:"error"`
		Status   *struct {
			State        string        `json:"state"`
			Term         uint64        `json:"term"`
			AppliedIndex uint64        `json:"applied_index"`
			CommitIndex  uint64        `json:"commit_index"`
			LastContact  time.Duration `json:"last_contact"`
		} `json:"status"`
	} `json:"members"`
}

// runCluster runs "extauthz cluster status|add|remove"; args start after "cluster".
func runCluster(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if done, err := commandHelp(args, clusterUsage, stdout, stderr); done {
		return err
	}
	sub := args[0]
	var method, path, argsUsage string
	var want int
	switch sub {
	case "status":
		method, path, want = http.MethodGet, "/api/v1/cluster", 0
	case "add":
		method, path, argsUsage, want = http.MethodPost, "/api/v1/cluster/members", "ID HOST:PORT", 2
	case "remove":
		method, argsUsage, want = http.MethodDelete, "ID", 1
	default:
		fmt.Fprintf(stderr, "extauthz cluster: unknown command %q\n\n%s", sub, clusterUsage)
		return errUsage
	}
	cli, pos, err := parseCLI("cluster "+sub, argsUsage, args[1:], getenv, stderr, nil)
	if err != nil {
		return err
	}
	if len(pos) != want {
		fmt.Fprintf(stderr, "extauthz cluster %s: want %s, got %q\n", sub, orNothing(argsUsage), pos)
		return errUsage
	}
	var body *requestBody
	switch sub {
	case "add":
		body = jsonBody(map[string]string{"id": pos[0], "addr": pos[1]})
	case "remove":
		path = "/api/v1/cluster/members/" + url.PathEscape(pos[0])
	}
	var out cliCluster
	raw, err := cli.call(ctx, method, path, nil, body, &out)
	if err != nil {
		return err
	}
	if cli.json {
		return writeIndented(stdout, raw)
	}
	tw := newTable(stdout)
	fmt.Fprintln(tw, "ID\tADDRESS\tSUFFRAGE\tSTATE\tTERM\tAPPLIED\tCOMMIT\tLAST CONTACT")
	for _, m := range out.Members {
		if m.Status == nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\t-\n", m.ID, m.Addr, m.Suffrage, m.Error)
			continue
		}
		st := m.Status
		contact := "-"
		if st.State != "Leader" {
			contact = st.LastContact.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", m.ID, m.Addr, m.Suffrage, st.State, st.Term, st.AppliedIndex, st.CommitIndex, contact)
	}
	return tw.Flush()
}

func orNothing(s string) string {
	if s == "" {
		return "no arguments"
	}
	return s
}
