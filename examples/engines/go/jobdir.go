package main

// A job's durable state: one directory per job under <state_dir>/jobs, shared by the plugin and
// the job's shim, so that a job and its events outlive the plugin process.
//
//	<job>/spec.json          what StartJob asked for (written once, before the shim starts)
//	<job>/events.jsonl       the job's events, one JSON object a line; the shim writes them
//	<job>/shim.pid           "<pid> <start time>" of the shim (a new plugin checks it is alive)
//	<job>/algorithm.pid      "<pid> <start time>" of the algorithm's process group leader
//	<job>/stop.json          a stop request (grace seconds, reason); the shim polls for it
//	<job>/shim.log           the shim's own messages and the pods' output
//	<job>/data/              C2D_DATA: inputs/ transformations/ outputs/ logs/
//	<job>/data/logs/algorithm.log   the algorithm's stdout and stderr (StreamJobLogs)

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	specFile     = "spec.json"
	eventsFile   = "events.jsonl"
	shimPidFile  = "shim.pid"
	algoPidFile  = "algorithm.pid"
	stopFile     = "stop.json"
	shimLogFile  = "shim.log"
	dataDir      = "data"
	algorithmLog = "data/logs/algorithm.log"
)

var dataDirs = []string{"inputs", "transformations", "outputs", "logs"}

// Status numbers of c2d.common.v1.JobStatus, as stored in events.jsonl.
const (
	statusProvisioning        = 30
	statusDataProvisionFailed = 31
	statusContainerFailed     = 22
	statusRunning             = 40
	statusAlgorithmFailed     = 41
	statusTimedOut            = 43
	statusPublishing          = 60
	statusUploadFailed        = 62
	statusFinished            = 70
	statusStopped             = 80
	statusLost                = 82
)

type podSpec struct {
	NodePeerID     string `json:"node_peer_id"`
	NodeHTTPAPI    string `json:"node_http_api"`
	PrivateKey     string `json:"private_key"`
	Python         string `json:"python"`
	TimeoutSeconds int    `json:"timeout_seconds"`
}

type jobSpec struct {
	JobID            string             `json:"job_id"`
	WorkflowID       string             `json:"workflow_id"`
	EnvironmentID    string             `json:"environment_id"`
	HostID           string             `json:"host_id"`
	Command          string             `json:"command"`
	Env              map[string]string  `json:"env,omitempty"`
	TimeLimitSeconds uint32             `json:"time_limit_seconds"`
	Granted          map[string]float64 `json:"granted,omitempty"` // resource id -> amount
	Pod              *podSpec           `json:"pod,omitempty"`
	Created          int64              `json:"created"`
}

type eventRecord struct {
	Seq               uint64            `json:"seq"`
	Time              int64             `json:"time"` // unix nanoseconds
	Status            int32             `json:"status"`
	Message           string            `json:"message,omitempty"`
	Terminal          bool              `json:"terminal,omitempty"`
	ExitCode          *int32            `json:"exit_code,omitempty"`
	TimedOut          bool              `json:"timed_out,omitempty"`
	Stopped           bool              `json:"stopped,omitempty"`
	AlgorithmStarted  int64             `json:"algorithm_started,omitempty"`
	AlgorithmFinished int64             `json:"algorithm_finished,omitempty"`
	Details           map[string]string `json:"details,omitempty"`
}

type stopRequest struct {
	GraceSeconds uint32 `json:"grace_seconds"`
	Reason       string `json:"reason"`
}

type jobDir struct {
	path string
	// Serialises appends from this process (the shim's events, or the plugin's LOST event).
	mu sync.Mutex
}

func (j *jobDir) file(name string) string { return filepath.Join(j.path, name) }

func (j *jobDir) exists() bool {
	_, err := os.Stat(j.file(specFile))
	return err == nil
}

func (j *jobDir) readSpec() (*jobSpec, error) {
	raw, err := os.ReadFile(j.file(specFile))
	if err != nil {
		return nil, err
	}
	var spec jobSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", j.file(specFile), err)
	}
	return &spec, nil
}

// events reads every complete event; a line cut short by a crash mid-write is skipped.
func (j *jobDir) events() []eventRecord {
	f, err := os.Open(j.file(eventsFile))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []eventRecord
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64*1024), 1<<20)
	for scanner.Scan() {
		var ev eventRecord
		if json.Unmarshal(scanner.Bytes(), &ev) == nil && ev.Seq == uint64(len(out)+1) {
			out = append(out, ev)
		}
	}
	return out
}

// appendEvent numbers the event after the last one on disk and appends it; no event after a terminal one.
func (j *jobDir) appendEvent(ev eventRecord) (eventRecord, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	existing := j.events()
	if n := len(existing); n > 0 && existing[n-1].Terminal {
		return existing[n-1], false
	}
	ev.Seq = uint64(len(existing) + 1)
	if ev.Time == 0 {
		ev.Time = time.Now().UnixNano()
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return ev, false
	}
	f, err := os.OpenFile(j.file(eventsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return ev, false
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return ev, false
	}
	_ = f.Sync()
	return ev, true
}

func (j *jobDir) last() (eventRecord, bool) {
	evs := j.events()
	if len(evs) == 0 {
		return eventRecord{}, false
	}
	return evs[len(evs)-1], true
}

func (j *jobDir) terminal() bool {
	ev, ok := j.last()
	return ok && ev.Terminal
}

func (j *jobDir) stopRequested() (*stopRequest, bool) {
	raw, err := os.ReadFile(j.file(stopFile))
	if err != nil {
		return nil, false
	}
	var req stopRequest
	_ = json.Unmarshal(raw, &req)
	return &req, true
}

func (j *jobDir) requestStop(req stopRequest) error {
	if _, ok := j.stopRequested(); ok {
		return nil // the first request stands
	}
	raw, _ := json.Marshal(req)
	return writeAtomic(j.file(stopFile), raw)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// processRef names one process for good: a pid and its start time (pids are reused).
type processRef struct {
	pid   int
	start string
}

func startTimeOf(pid int) (string, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	text := string(raw)
	i := strings.LastIndexByte(text, ')')
	if i < 0 {
		return "", false
	}
	fields := strings.Fields(text[i+1:])
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return "", false // gone, or a zombie: dead either way
	}
	return fields[19], true // field 22 of stat: the start time in clock ticks
}

func writeProcess(path string, pid int) {
	if start, ok := startTimeOf(pid); ok {
		_ = writeAtomic(path, []byte(fmt.Sprintf("%d %s\n", pid, start)))
	}
}

func readProcess(path string) (processRef, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return processRef{}, false
	}
	fields := strings.Fields(string(raw))
	if len(fields) != 2 {
		return processRef{}, false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || pid <= 1 {
		return processRef{}, false
	}
	return processRef{pid, fields[1]}, true
}

func (p processRef) alive() bool {
	start, ok := startTimeOf(p.pid)
	return ok && start == p.start
}

func signalGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}
