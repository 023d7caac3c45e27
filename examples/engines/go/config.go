package main

import (
	"fmt"
	"math"
)

// The engine's config section ([engines.go_engine] in the node's config), as Configure sends it:
//
//	enabled             must be true (the engine runs consumers' code unconfined, see below)
//	environments        [{id, description, cpu, ram_gib, disk_gib, max_jobs, max_job_duration_seconds}]
//	pod_python          the interpreter that runs -m pods.configuration / -m pods.publishing
//	pod_timeout_seconds how long each pod may take (default 600)
//	unsafe_unconfined   run anyone's jobs although nothing confines them (default: only the
//	                    operator's own, that is jobs whose owner is the node's address)
type environmentConfig struct {
	ID                    string
	Description           string
	CPU                   float64
	RAMGiB                float64
	DiskGiB               float64
	MaxJobs               uint32
	MaxJobDurationSeconds uint32
}

type engineConfig struct {
	Environments      []environmentConfig
	PodPython         string
	PodTimeoutSeconds int
	UnsafeUnconfined  bool
}

type configError struct{ message string }

func (e *configError) Error() string { return e.message }

func invalid(format string, args ...interface{}) error {
	return &configError{fmt.Sprintf(format, args...)}
}

var allowedKeys = map[string]bool{
	"enabled": true, "environments": true, "pod_python": true, "pod_timeout_seconds": true,
	"unsafe_unconfined": true,
}

func parseConfig(raw map[string]interface{}) (*engineConfig, error) {
	for key := range raw {
		if !allowedKeys[key] {
			return nil, invalid("unknown config key %q (known: enabled, environments, pod_python, pod_timeout_seconds, unsafe_unconfined)", key)
		}
	}
	cfg := &engineConfig{PodPython: "python3", PodTimeoutSeconds: defaultPodTimeout}
	if v, ok := raw["pod_python"]; ok {
		s, isString := v.(string)
		if !isString || s == "" {
			return nil, invalid("pod_python must be the path of a Python interpreter, got %v", v)
		}
		cfg.PodPython = s
	}
	if v, ok := raw["pod_timeout_seconds"]; ok {
		n, err := count(v, "pod_timeout_seconds")
		if err != nil || n < 1 {
			return nil, invalid("pod_timeout_seconds must be a whole number of seconds, at least 1, got %v", v)
		}
		cfg.PodTimeoutSeconds = int(n)
	}
	if v, ok := raw["unsafe_unconfined"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return nil, invalid("unsafe_unconfined must be true or false, got %v", v)
		}
		cfg.UnsafeUnconfined = b
	}
	envs, ok := raw["environments"]
	if !ok {
		cfg.Environments = []environmentConfig{{
			ID: "go-local", Description: "Jobs as local processes, run by an engine written in Go",
			CPU: 2, RAMGiB: 4, DiskGiB: 10, MaxJobs: 4, MaxJobDurationSeconds: 3600,
		}}
		return cfg, nil
	}
	list, isList := envs.([]interface{})
	if !isList || len(list) == 0 {
		return nil, invalid("environments must be a non-empty list of tables, got %v", envs)
	}
	seen := map[string]bool{}
	for i, item := range list {
		table, isTable := item.(map[string]interface{})
		if !isTable {
			return nil, invalid("environments[%d] must be a table, got %v", i, item)
		}
		env, err := parseEnvironment(table, i)
		if err != nil {
			return nil, err
		}
		if seen[env.ID] {
			return nil, invalid("environments[%d]: id %q appears twice", i, env.ID)
		}
		seen[env.ID] = true
		cfg.Environments = append(cfg.Environments, env)
	}
	return cfg, nil
}

func parseEnvironment(t map[string]interface{}, i int) (environmentConfig, error) {
	env := environmentConfig{CPU: 2, RAMGiB: 4, DiskGiB: 10, MaxJobs: 4, MaxJobDurationSeconds: 3600}
	id, _ := t["id"].(string)
	if id == "" {
		return env, invalid("environments[%d].id must be a non-empty string", i)
	}
	env.ID = id
	env.Description, _ = t["description"].(string)
	for key, target := range map[string]*float64{"cpu": &env.CPU, "ram_gib": &env.RAMGiB, "disk_gib": &env.DiskGiB} {
		if v, ok := t[key]; ok {
			f, isNumber := v.(float64)
			if !isNumber || f <= 0 {
				return env, invalid("environments[%d].%s must be a number above 0, got %v", i, key, v)
			}
			*target = f
		}
	}
	for key, target := range map[string]*uint32{"max_jobs": &env.MaxJobs, "max_job_duration_seconds": &env.MaxJobDurationSeconds} {
		if v, ok := t[key]; ok {
			n, err := count(v, key)
			if err != nil {
				return env, invalid("environments[%d].%s: %v", i, key, err)
			}
			*target = uint32(n)
		}
	}
	return env, nil
}

func count(v interface{}, key string) (float64, error) {
	f, ok := v.(float64)
	if !ok || f < 0 || f != math.Trunc(f) || f > math.MaxUint32 {
		return 0, fmt.Errorf("%s must be a whole number, got %v", key, v)
	}
	return f, nil
}

func (c *engineConfig) environment(id string) *environmentConfig {
	for i := range c.Environments {
		if c.Environments[i].ID == id {
			return &c.Environments[i]
		}
	}
	return nil
}
