package main

// The shim: `c2d-go-engine shim <job dir>`, started by the plugin in a session of its own, runs one
// job to its end and writes its events, so that a job outlives the plugin (a crash, an upgrade).
// It runs the pods around the algorithm when the job has them (`<python> -m pods.configuration`,
// `-m pods.publishing`), enforces the time limit and carries out stop requests.

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

const (
	pollInterval       = 50 * time.Millisecond
	timeoutGrace       = 2 * time.Second
	defaultPodTimeout  = 600
	basePath           = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	endStopped         = "stopped"
	endTimedOut        = "timed_out"
	shimExitCreateFail = 1
	jobNice            = 10
)

type shim struct {
	job  *jobDir
	spec *jobSpec
	data string
}

func runShim(path string) int {
	// The node's and the plugin's signals are not the job's: only stop requests end it.
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	job := &jobDir{path: path}
	spec, err := job.readSpec()
	if err != nil {
		fmt.Fprintf(os.Stderr, "shim: %v\n", err)
		return 2
	}
	s := &shim{job: job, spec: spec, data: job.file(dataDir)}
	// Jobs (and the pods) run at a lower CPU priority than the node and the plugin.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, 0, jobNice)
	writeProcess(job.file(shimPidFile), os.Getpid())
	if _, stop := job.stopRequested(); stop {
		s.end(eventRecord{Status: statusStopped, Stopped: true, Message: "stopped before it started"})
		return 0
	}
	var outcome eventRecord
	if spec.Pod != nil {
		outcome = s.runWithPods()
	} else {
		outcome = s.runAlgorithm()
	}
	s.end(outcome)
	if outcome.Status == statusContainerFailed {
		return shimExitCreateFail
	}
	return 0
}

func (s *shim) end(ev eventRecord) {
	ev.Terminal = true
	s.job.appendEvent(ev)
}

func (s *shim) stopping() bool {
	_, ok := s.job.stopRequested()
	return ok
}

func (s *shim) stopped(when string) eventRecord {
	why := "stop requested"
	if req, ok := s.job.stopRequested(); ok && req.Reason != "" {
		why = req.Reason
	}
	return eventRecord{Status: statusStopped, Stopped: true, Message: fmt.Sprintf("stopped %s: %s", when, why)}
}

func (s *shim) baseEnv() []string {
	return []string{"PATH=" + basePath, "HOME=" + s.data, "LANG=C.UTF-8", "C2D_DATA=" + s.data}
}

// start runs argv in the job's data directory, in a session (and process group) of its own.
func (s *shim) start(argv []string, env []string, output string) (*exec.Cmd, error) {
	out, err := os.OpenFile(output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.data
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// supervise waits for cmd, ending its group on a stop request or past the limit; how it ended.
func (s *shim) supervise(cmd *exec.Cmd, limit time.Duration) (exitCode int32, reason string) {
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(limit)
	var killAt time.Time
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			signalGroup(pgid, syscall.SIGKILL) // whatever it left behind in its group
			return exitStatus(cmd.ProcessState), reason
		case now := <-ticker.C:
			switch {
			case reason == "" && s.stopping():
				req, _ := s.job.stopRequested()
				reason, killAt = endStopped, now.Add(time.Duration(req.GraceSeconds)*time.Second)
				signalGroup(pgid, syscall.SIGTERM)
			case reason == "" && now.After(deadline):
				reason, killAt = endTimedOut, now.Add(timeoutGrace)
				signalGroup(pgid, syscall.SIGTERM)
			case reason != "" && !killAt.IsZero() && now.After(killAt):
				signalGroup(pgid, syscall.SIGKILL)
				killAt = time.Time{}
			}
		}
	}
}

// exitStatus as the shell reports it: the exit code, or 128 + the signal that killed it.
func exitStatus(state *os.ProcessState) int32 {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return int32(128 + int(ws.Signal()))
	}
	return int32(state.ExitCode())
}

// algorithmArgv: the command under sh, with its memory grant as RLIMIT_AS (sh's ulimit -v, in KiB).
func (s *shim) algorithmArgv() []string {
	ram := s.spec.Granted["ram"]
	if ram <= 0 {
		return []string{"/bin/sh", "-c", s.spec.Command}
	}
	kib := int64(ram * 1024 * 1024)
	return []string{"/bin/sh", "-c", `ulimit -v "$1" && exec /bin/sh -c "$0"`, s.spec.Command, fmt.Sprint(kib)}
}

func (s *shim) runAlgorithm() eventRecord {
	if s.stopping() {
		return s.stopped("before the algorithm started")
	}
	env := s.baseEnv()
	for k, v := range s.spec.Env {
		env = append(env, k+"="+v)
	}
	// The container contract's $ALGO, for the shell to expand.
	env = append(env, "ALGO="+filepath.Join(s.data, "transformations", "algorithm"))
	started := time.Now().UnixNano()
	cmd, err := s.start(s.algorithmArgv(), env, s.job.file(algorithmLog))
	if err != nil {
		return eventRecord{Status: statusContainerFailed, Message: "could not start the algorithm: " + err.Error()}
	}
	writeProcess(s.job.file(algoPidFile), cmd.Process.Pid)
	s.job.appendEvent(eventRecord{
		Status: statusRunning, AlgorithmStarted: started, Message: "algorithm started",
		Details: map[string]string{"pid": fmt.Sprint(cmd.Process.Pid)},
	})
	code, reason := s.supervise(cmd, time.Duration(s.spec.TimeLimitSeconds)*time.Second)
	ev := eventRecord{AlgorithmStarted: started, AlgorithmFinished: time.Now().UnixNano()}
	switch {
	case reason == endStopped:
		stopped := s.stopped("while the algorithm ran")
		stopped.AlgorithmStarted, stopped.AlgorithmFinished = ev.AlgorithmStarted, ev.AlgorithmFinished
		return stopped
	case reason == endTimedOut:
		ev.Status, ev.TimedOut = statusTimedOut, true
		ev.Message = fmt.Sprintf("ran past its time limit of %d s", s.spec.TimeLimitSeconds)
	case code == 0:
		ev.Status, ev.Message = statusFinished, "exited with code 0"
	default:
		ev.Status, ev.Message = statusAlgorithmFailed, fmt.Sprintf("exited with code %d", code)
	}
	ev.ExitCode = &code
	return ev
}

// runWithPods: pod-configuration, the algorithm, pod-publishing. Publishing runs after a failed
// provisioning or algorithm too (the logs reach the node); only a stop skips it. The first failure
// decides the status.
func (s *shim) runWithPods() eventRecord {
	s.job.appendEvent(eventRecord{Status: statusProvisioning, Message: "pod-configuration started"})
	stopped, failure := s.runPod("configuration")
	if stopped {
		return s.stopped("during provisioning")
	}
	var outcome eventRecord
	if failure != "" {
		outcome = eventRecord{Status: statusDataProvisionFailed, Message: failure}
	} else {
		outcome = s.runAlgorithm()
	}
	if outcome.Stopped {
		return outcome
	}
	s.job.appendEvent(eventRecord{Status: statusPublishing, Message: "pod-publishing started"})
	stopped, failure = s.runPod("publishing")
	if stopped {
		ev := s.stopped("during publishing")
		ev.AlgorithmStarted, ev.AlgorithmFinished = outcome.AlgorithmStarted, outcome.AlgorithmFinished
		return ev
	}
	if failure != "" {
		if outcome.Status == statusFinished {
			outcome.Status, outcome.Message = statusUploadFailed, failure
		} else {
			outcome.Message += "; then " + failure
		}
	}
	return outcome
}

func (s *shim) runPod(step string) (stopped bool, failure string) {
	if s.stopping() {
		return true, ""
	}
	pod := s.spec.Pod
	name := "pod-" + step
	env := append(s.baseEnv(),
		"nodePeerId="+pod.NodePeerID, "nodeHttpApi="+pod.NodeHTTPAPI, "privateKey="+pod.PrivateKey,
		"jobId="+s.spec.JobID, "PYTHONSAFEPATH=1", "PYTHONUNBUFFERED=1")
	if path := os.Getenv("PYTHONPATH"); path != "" {
		env = append(env, "PYTHONPATH="+path)
	}
	cmd, err := s.start([]string{pod.Python, "-m", "pods." + step}, env, s.job.file(shimLogFile))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s could not be started: %v\n", name, err)
		return false, name + " could not be started"
	}
	limit := pod.TimeoutSeconds
	if limit <= 0 {
		limit = defaultPodTimeout
	}
	code, reason := s.supervise(cmd, time.Duration(limit)*time.Second)
	switch {
	case reason == endStopped:
		return true, ""
	case reason == endTimedOut:
		return false, fmt.Sprintf("%s ran past its time limit of %d s", name, limit)
	case code != 0:
		return false, fmt.Sprintf("%s exited with code %d", name, code)
	}
	return false, ""
}
