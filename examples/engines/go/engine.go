package main

// The engine API (proto/c2d/engine/v1/engine.proto) over job directories and shims.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	commonv1 "c2dexample/gen/commonv1"
	enginev1 "c2dexample/gen/enginev1"

	hclog "github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	engineName       = "go_engine"
	pluginVersion    = "0.1.0"
	handleVersion    = 1
	logChunk         = 64 * 1024
	destroyWait      = 10 * time.Second
	fingerprintCheck = 500 * time.Millisecond
	operatorOnly     = "c2d.operator_only"
	unconfinedRefuse = "this engine runs jobs unconfined (as the node's user): only the operator's own jobs " +
		"run, unless the operator sets unsafe_unconfined = true in its config"
)

var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

type engine struct {
	enginev1.UnimplementedComputeEngineServiceServer
	log  hclog.Logger
	self string // this executable, which is also the shim

	mu       sync.Mutex
	config   *engineConfig
	hostID   string
	jobsDir  string
	draining bool
	starting sync.Mutex // StartJob is idempotent on job_id: one at a time
}

func newEngine(log hclog.Logger) *engine {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return &engine{log: log, self: self}
}

type configured struct {
	config  *engineConfig
	hostID  string
	jobsDir string
}

func (e *engine) configured() (configured, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.config == nil {
		return configured{}, status.Error(codes.FailedPrecondition, "not configured: Configure comes first")
	}
	return configured{e.config, e.hostID, e.jobsDir}, nil
}

func (e *engine) GetPluginInfo(context.Context, *enginev1.GetPluginInfoRequest) (*enginev1.GetPluginInfoResponse, error) {
	return &enginev1.GetPluginInfoResponse{
		Name: engineName, PluginVersion: pluginVersion, ApiVersions: []uint32{apiVersion},
		Description: "Jobs as local processes, in Go on stock HashiCorp go-plugin",
	}, nil
}

func (e *engine) Configure(_ context.Context, req *enginev1.ConfigureRequest) (*enginev1.ConfigureResponse, error) {
	if req.GetApiVersion() != apiVersion {
		return nil, status.Errorf(codes.FailedPrecondition, "engine API version %d is not spoken here (only %d)", req.GetApiVersion(), apiVersion)
	}
	raw := req.GetConfig().AsMap()
	if enabled, _ := raw["enabled"].(bool); !enabled {
		return nil, status.Error(codes.FailedPrecondition, "go_engine is disabled: set enabled = true in its config section to run jobs as local processes")
	}
	cfg, err := parseConfig(raw)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if req.GetStateDir() == "" || req.GetHostId() == "" {
		return nil, status.Error(codes.InvalidArgument, "Configure needs a state_dir and a host_id")
	}
	jobs := filepath.Join(req.GetStateDir(), "jobs")
	if err := os.MkdirAll(jobs, 0o700); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "cannot create %s: %v", jobs, err)
	}
	e.mu.Lock()
	e.config, e.hostID, e.jobsDir = cfg, req.GetHostId(), jobs
	e.mu.Unlock()
	e.log.Info("configured", "environments", len(cfg.Environments), "state_dir", req.GetStateDir())
	return &enginev1.ConfigureResponse{}, nil
}

func (e *engine) Drain(context.Context, *enginev1.DrainRequest) (*enginev1.DrainResponse, error) {
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()
	e.log.Info("draining: taking no new jobs")
	return &enginev1.DrainResponse{}, nil
}

// -- fingerprint -------------------------------------------------------------------------------

func (e *engine) fingerprint() *enginev1.Fingerprint {
	e.mu.Lock()
	cfg, jobsDir, hostID, draining := e.config, e.jobsDir, e.hostID, e.draining
	e.mu.Unlock()
	if cfg == nil {
		return &enginev1.Fingerprint{Health: commonv1.EngineHealth_ENGINE_HEALTH_UNDETECTED, HealthDescription: "not configured yet"}
	}
	description := "WARNING: jobs run UNCONFINED as the node's user: only the operator's own jobs run"
	if cfg.UnsafeUnconfined {
		description = "WARNING: jobs run UNCONFINED as the node's user (unsafe_unconfined = true): any consumer's " +
			"algorithm can read the node key, the database and the data root"
	}
	if draining {
		description = "draining: taking no new jobs; " + description
	}
	running := map[string]uint32{}
	used := map[string]map[string]float64{}
	for _, job := range listJobDirs(jobsDir) {
		spec, err := job.readSpec()
		if err != nil || spec.HostID != hostID || job.terminal() {
			continue
		}
		running[spec.EnvironmentID]++
		if used[spec.EnvironmentID] == nil {
			used[spec.EnvironmentID] = map[string]float64{}
		}
		for id, amount := range spec.Granted {
			used[spec.EnvironmentID][id] += amount
		}
	}
	fp := &enginev1.Fingerprint{
		Health:            commonv1.EngineHealth_ENGINE_HEALTH_HEALTHY,
		HealthDescription: description,
		Capabilities:      &enginev1.Capabilities{DiskQuota: "none", LogStreaming: true, RunsPods: true},
	}
	for _, env := range cfg.Environments {
		u := used[env.ID]
		labels := map[string]string{}
		if !cfg.UnsafeUnconfined {
			labels[operatorOnly] = "true"
		}
		extra, _ := structpb.NewStruct(map[string]interface{}{"isolation": "none", "language": "go"})
		fp.Environments = append(fp.Environments, &commonv1.Environment{
			Id:          env.ID,
			Engine:      engineName,
			Description: env.Description,
			Resources: []*commonv1.Resource{
				resource("cpu", commonv1.ResourceType_RESOURCE_TYPE_CPU, "cores", env.CPU, u["cpu"]),
				resource("ram", commonv1.ResourceType_RESOURCE_TYPE_RAM, "GiB", env.RAMGiB, u["ram"]),
				resource("disk", commonv1.ResourceType_RESOURCE_TYPE_DISK, "GiB", env.DiskGiB, u["disk"]),
			},
			MaxJobDurationSeconds: env.MaxJobDurationSeconds,
			Network:               &commonv1.NetworkPolicy{AllowNetwork: true},
			RunningJobs:           running[env.ID],
			EngineHealth:          commonv1.EngineHealth_ENGINE_HEALTH_HEALTHY,
			Platform:              runtime.GOOS + "/" + runtime.GOARCH,
			MaxJobs:               env.MaxJobs,
			Labels:                labels,
			Extra:                 extra,
		})
	}
	return fp
}

func resource(id string, kind commonv1.ResourceType, unit string, total, inUse float64) *commonv1.Resource {
	min := 1.0
	if total < min {
		min = total
	}
	available := total - inUse
	if available < 0 {
		available = 0
	}
	return &commonv1.Resource{Id: id, Type: kind, Unit: unit, Total: total, Min: min, Max: total, InUse: inUse, Available: available}
}

// WatchFingerprint sends the fingerprint at once and again whenever it changes.
func (e *engine) WatchFingerprint(_ *enginev1.WatchFingerprintRequest, stream enginev1.ComputeEngineService_WatchFingerprintServer) error {
	var sent *enginev1.Fingerprint
	ticker := time.NewTicker(fingerprintCheck)
	defer ticker.Stop()
	for {
		if fp := e.fingerprint(); sent == nil || !proto.Equal(fp, sent) {
			if err := stream.Send(&enginev1.WatchFingerprintResponse{Fingerprint: fp}); err != nil {
				return err
			}
			sent = fp
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-ticker.C:
		}
	}
}

// -- jobs --------------------------------------------------------------------------------------

func listJobDirs(jobsDir string) []*jobDir {
	entries, err := os.ReadDir(jobsDir)
	if err != nil {
		return nil
	}
	var out []*jobDir
	for _, entry := range entries {
		if entry.IsDir() && !strings.HasPrefix(entry.Name(), ".") {
			out = append(out, &jobDir{path: filepath.Join(jobsDir, entry.Name())})
		}
	}
	return out
}

// job finds this host's job by id; nil when there is none (or the id could never be one).
func (c configured) job(id string) *jobDir {
	if !jobIDPattern.MatchString(id) {
		return nil
	}
	job := &jobDir{path: filepath.Join(c.jobsDir, id)}
	spec, err := job.readSpec()
	if err != nil || spec.HostID != c.hostID {
		return nil
	}
	return job
}

func handleOf(id string) *enginev1.JobHandle {
	state, _ := json.Marshal(map[string]string{"job_id": id})
	return &enginev1.JobHandle{JobId: id, Version: handleVersion, State: state}
}

func (e *engine) StartJob(_ context.Context, req *enginev1.StartJobRequest) (*enginev1.StartJobResponse, error) {
	c, err := e.configured()
	if err != nil {
		return nil, err
	}
	spec := req.GetSpec()
	id := spec.GetJobId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "spec.job_id is empty")
	}
	if !jobIDPattern.MatchString(id) {
		return nil, status.Errorf(codes.InvalidArgument, "spec.job_id %q must be 1 to 128 letters, digits and ._:- (not starting with one of those marks)", id)
	}
	e.starting.Lock()
	defer e.starting.Unlock()
	if job := c.job(id); job != nil {
		return &enginev1.StartJobResponse{Handle: handleOf(id)}, nil // idempotent: nothing runs twice
	}
	if (&jobDir{path: filepath.Join(c.jobsDir, id)}).exists() {
		return nil, status.Errorf(codes.AlreadyExists, "job %q exists in this state_dir for another host_id", id)
	}
	e.mu.Lock()
	draining := e.draining
	e.mu.Unlock()
	if draining {
		return nil, status.Error(codes.Unavailable, "the engine is draining: it takes no new jobs")
	}
	if strings.TrimSpace(spec.GetContainer().GetCommand()) == "" {
		return nil, status.Error(codes.InvalidArgument, "spec.container.command is empty: nothing to run")
	}
	env := c.config.environment(spec.GetEnvironmentId())
	if env == nil {
		known := []string{}
		for _, e := range c.config.Environments {
			known = append(known, e.ID)
		}
		return nil, status.Errorf(codes.InvalidArgument, "unknown environment %q (this engine has: %s)", spec.GetEnvironmentId(), strings.Join(known, ", "))
	}
	record, err := e.record(spec, env, c)
	if err != nil {
		return nil, err
	}
	if err := e.create(c, record); err != nil {
		return nil, status.Errorf(codes.Internal, "cannot create the job's directory: %v", err)
	}
	e.log.Info("job started", "job_id", id, "environment", env.ID)
	return &enginev1.StartJobResponse{Handle: handleOf(id)}, nil
}

func (e *engine) record(spec *enginev1.JobSpec, env *environmentConfig, c configured) (*jobSpec, error) {
	limit := spec.GetMaxDurationSeconds()
	if limit == 0 || (env.MaxJobDurationSeconds > 0 && limit > env.MaxJobDurationSeconds) {
		limit = env.MaxJobDurationSeconds
	}
	if limit == 0 {
		limit = 3600
	}
	record := &jobSpec{
		JobID: spec.GetJobId(), WorkflowID: spec.GetWorkflowId(), EnvironmentID: env.ID, HostID: c.hostID,
		Command: spec.GetContainer().GetCommand(), Env: spec.GetContainer().GetEnv(), TimeLimitSeconds: limit,
		Granted: map[string]float64{}, Created: time.Now().UnixNano(),
	}
	for _, g := range spec.GetResources() {
		record.Granted[g.GetId()] += g.GetAmount()
	}
	if pod := spec.GetPod(); pod != nil {
		if strings.TrimSpace(pod.GetNodeHttpApi()) == "" || strings.TrimSpace(pod.GetPrivateKey()) == "" {
			return nil, status.Error(codes.InvalidArgument, "spec.pod needs node_http_api and private_key: the pods could not call the node back")
		}
		record.Pod = &podSpec{
			NodePeerID: pod.GetNodePeerId(), NodeHTTPAPI: pod.GetNodeHttpApi(), PrivateKey: pod.GetPrivateKey(),
			Python: c.config.PodPython, TimeoutSeconds: c.config.PodTimeoutSeconds,
		}
	}
	// Unconfined, an algorithm could read the node's key and the stage's pod key: only the operator's
	// own jobs (the pod access names the node's address) run so, unless the operator accepted the risk.
	if !c.config.UnsafeUnconfined && spec.GetPod() != nil {
		operator := strings.ToLower(spec.GetPod().GetNodePeerId())
		if operator == "" || strings.ToLower(spec.GetOwner()) != operator {
			return nil, status.Error(codes.FailedPrecondition, unconfinedRefuse)
		}
	}
	return record, nil
}

// create writes the job directory under a temporary name, moves it in place, then starts its shim.
func (e *engine) create(c configured, record *jobSpec) error {
	final := filepath.Join(c.jobsDir, record.JobID)
	if other := (&jobDir{path: final}); other.exists() {
		return fmt.Errorf("job %q exists for another host", record.JobID) // never someone else's job
	}
	_ = os.RemoveAll(final) // a directory without a spec is the rest of a failed start
	tmp, err := os.MkdirTemp(c.jobsDir, ".new-")
	if err != nil {
		return err
	}
	for _, dir := range dataDirs {
		if err := os.MkdirAll(filepath.Join(tmp, dataDir, dir), 0o700); err != nil {
			return err
		}
	}
	raw, _ := json.MarshalIndent(record, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, specFile), raw, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	job := &jobDir{path: final}
	if err := e.startShim(job); err != nil {
		job.appendEvent(eventRecord{Status: statusContainerFailed, Terminal: true, Message: "could not start the job's shim: " + err.Error()})
	}
	return nil
}

func (e *engine) startShim(job *jobDir) error {
	out, err := os.OpenFile(job.file(shimLogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(e.self, "shim", job.path)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // its own session: it outlives the plugin
	if err := cmd.Start(); err != nil {
		return err
	}
	writeProcess(job.file(shimPidFile), cmd.Process.Pid)
	go func() { _ = cmd.Wait() }() // reap it, or it lingers as a zombie that looks alive
	return nil
}

// settle records a job whose shim is gone without a terminal event as LOST; true when it is terminal.
func (e *engine) settle(job *jobDir) bool {
	if job.terminal() {
		return true
	}
	ref, ok := readProcess(job.file(shimPidFile))
	if ok && ref.alive() {
		return false
	}
	if !ok {
		spec, err := job.readSpec()
		if err == nil && time.Since(time.Unix(0, spec.Created)) < 10*time.Second {
			return false // the shim may not have written its pid yet
		}
	}
	if job.terminal() { // it wrote its end just before it exited
		return true
	}
	job.appendEvent(eventRecord{Status: statusLost, Terminal: true, Message: "the job's shim is gone without reporting how the job ended"})
	e.log.Warn("job lost", "job", filepath.Base(job.path))
	return true
}

func toProto(jobID string, ev eventRecord) *enginev1.JobEvent {
	out := &enginev1.JobEvent{
		JobId: jobID, Sequence: ev.Seq, Time: timestamppb.New(time.Unix(0, ev.Time)),
		Status: commonv1.JobStatus(ev.Status), Message: ev.Message, Terminal: ev.Terminal,
		ExitCode: ev.ExitCode, TimedOut: ev.TimedOut, Stopped: ev.Stopped, Details: ev.Details,
	}
	if ev.AlgorithmStarted != 0 {
		out.AlgorithmStarted = timestamppb.New(time.Unix(0, ev.AlgorithmStarted))
	}
	if ev.AlgorithmFinished != 0 {
		out.AlgorithmFinished = timestamppb.New(time.Unix(0, ev.AlgorithmFinished))
	}
	return out
}

func (e *engine) RecoverJob(_ context.Context, req *enginev1.RecoverJobRequest) (*enginev1.RecoverJobResponse, error) {
	c, err := e.configured()
	if err != nil {
		return nil, err
	}
	id := req.GetHandle().GetJobId()
	job := c.job(id)
	if job == nil {
		return nil, status.Errorf(codes.NotFound, "no job %q on this engine", id)
	}
	e.settle(job)
	last, ok := job.last()
	reply := &enginev1.RecoverJobResponse{Handle: handleOf(id)}
	if ok {
		reply.LastEvent = toProto(id, last)
	} else {
		reply.LastEvent = &enginev1.JobEvent{JobId: id}
	}
	return reply, nil
}

func (e *engine) WatchJob(req *enginev1.WatchJobRequest, stream enginev1.ComputeEngineService_WatchJobServer) error {
	c, err := e.configured()
	if err != nil {
		return err
	}
	job := c.job(req.GetJobId())
	if job == nil {
		return status.Errorf(codes.NotFound, "no job %q on this engine", req.GetJobId())
	}
	after := req.GetAfterSequence()
	lastCheck := time.Now()
	for {
		for _, ev := range job.events() {
			if ev.Seq <= after {
				continue
			}
			if err := stream.Send(&enginev1.WatchJobResponse{Event: toProto(req.GetJobId(), ev)}); err != nil {
				return err
			}
			after = ev.Seq
			if ev.Terminal {
				return nil
			}
		}
		if !job.exists() {
			return status.Errorf(codes.NotFound, "job %q was destroyed", req.GetJobId())
		}
		if time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			e.settle(job)
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-time.After(pollInterval):
		}
	}
}

func (e *engine) StopJob(_ context.Context, req *enginev1.StopJobRequest) (*enginev1.StopJobResponse, error) {
	c, err := e.configured()
	if err != nil {
		return nil, err
	}
	job := c.job(req.GetJobId())
	if job == nil || e.settle(job) {
		return &enginev1.StopJobResponse{}, nil // ended or unknown: nothing to stop
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "stop requested"
	}
	if err := job.requestStop(stopRequest{GraceSeconds: req.GetGraceSeconds(), Reason: reason}); err != nil {
		return nil, status.Errorf(codes.Internal, "cannot record the stop request: %v", err)
	}
	e.log.Info("job stop requested", "job_id", req.GetJobId(), "grace_seconds", req.GetGraceSeconds())
	return &enginev1.StopJobResponse{}, nil
}

func (e *engine) DestroyJob(ctx context.Context, req *enginev1.DestroyJobRequest) (*enginev1.DestroyJobResponse, error) {
	c, err := e.configured()
	if err != nil {
		return nil, err
	}
	job := c.job(req.GetJobId())
	if job == nil {
		return &enginev1.DestroyJobResponse{}, nil
	}
	if !e.settle(job) {
		_ = job.requestStop(stopRequest{GraceSeconds: 0, Reason: "destroyed"})
		deadline := time.Now().Add(destroyWait)
		for !e.settle(job) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(pollInterval)
		}
	}
	// Whatever is left: the shim, then the algorithm's group.
	if ref, ok := readProcess(job.file(shimPidFile)); ok && ref.alive() {
		_ = syscall.Kill(ref.pid, syscall.SIGKILL)
	}
	if ref, ok := readProcess(job.file(algoPidFile)); ok && ref.alive() {
		signalGroup(ref.pid, syscall.SIGKILL)
	}
	// Renamed first, so the job is gone at once for every other call, even if removal takes time.
	gone := filepath.Join(c.jobsDir, fmt.Sprintf(".gone-%s-%d", req.GetJobId(), time.Now().UnixNano()))
	if err := os.Rename(job.path, gone); err != nil {
		return nil, status.Errorf(codes.Internal, "cannot remove job %q: %v", req.GetJobId(), err)
	}
	if err := os.RemoveAll(gone); err != nil {
		e.log.Warn("removing a destroyed job's directory failed", "path", gone, "error", err.Error())
	}
	e.log.Info("job destroyed", "job_id", req.GetJobId())
	return &enginev1.DestroyJobResponse{}, nil
}

func (e *engine) ListJobs(context.Context, *enginev1.ListJobsRequest) (*enginev1.ListJobsResponse, error) {
	c, err := e.configured()
	if err != nil {
		return nil, err
	}
	reply := &enginev1.ListJobsResponse{}
	for _, job := range listJobDirs(c.jobsDir) {
		spec, err := job.readSpec()
		if err != nil || spec.HostID != c.hostID {
			continue
		}
		e.settle(job)
		summary := &enginev1.JobSummary{JobId: spec.JobID, WorkflowId: spec.WorkflowID}
		if last, ok := job.last(); ok {
			summary.Terminal, summary.Status = last.Terminal, commonv1.JobStatus(last.Status)
		}
		reply.Jobs = append(reply.Jobs, summary)
	}
	sort.Slice(reply.Jobs, func(i, j int) bool { return reply.Jobs[i].JobId < reply.Jobs[j].JobId })
	return reply, nil
}

// StreamJobLogs sends the algorithm's output from offset; with follow, until the job ends.
func (e *engine) StreamJobLogs(req *enginev1.StreamJobLogsRequest, stream enginev1.ComputeEngineService_StreamJobLogsServer) error {
	c, err := e.configured()
	if err != nil {
		return err
	}
	job := c.job(req.GetJobId())
	if job == nil {
		return status.Errorf(codes.NotFound, "no job %q on this engine", req.GetJobId())
	}
	offset := req.GetOffset()
	buf := make([]byte, logChunk)
	for {
		ended := e.settle(job) // before reading: what the job wrote before its end is all read below
		for {
			n, err := readAt(job.file(algorithmLog), buf, int64(offset))
			if n > 0 {
				chunk := append([]byte(nil), buf[:n]...)
				if err := stream.Send(&enginev1.StreamJobLogsResponse{Data: chunk, Offset: offset}); err != nil {
					return err
				}
				offset += uint64(n)
			}
			if n == 0 || err != nil {
				break
			}
		}
		if !req.GetFollow() || ended {
			return nil
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-time.After(pollInterval * 2):
		}
	}
}

func readAt(path string, buf []byte, offset int64) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := f.ReadAt(buf, offset)
	if err == io.EOF {
		err = nil
		if n == 0 {
			return 0, nil
		}
	}
	return n, err
}
