"""bench/measure.py's reading of a kube-apiserver CPU profile: each sample goes to the first kind on its stack,
and a request's to custom resources or built-in kinds by the storage code on it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from measure import pprof_kinds

SEP = "-----------+-------------------------------------------------------"
H = "k8s.io/kubernetes/vendor/k8s.io/apiserver/pkg/endpoints/handlers"
TRACES = f"""File: kube-apiserver
Type: cpu
{SEP}
      30ms   encoding/json.(*encodeState).string
             {H}.serveWatch
             {H}.ListResource.func1
             k8s.io/kubernetes/vendor/k8s.io/apiextensions-apiserver/pkg/apiserver.(*crdHandler).ServeHTTP
             net/http.HandlerFunc.ServeHTTP
{SEP}
     1.2s   crypto/sha256.block
             k8s.io/kubernetes/vendor/k8s.io/apiextensions-apiserver/pkg/apiserver.schemaCoercingDecoder.Decode
             {H}.GetResource.func1
             k8s.io/kubernetes/vendor/k8s.io/apiextensions-apiserver/pkg/apiserver.(*crdHandler).ServeHTTP
{SEP}
      20ms   runtime.memmove
             k8s.io/kubernetes/pkg/registry/core/configmap.strategy.PrepareForUpdate
             {H}.(*patcher).patchResource.func2
             net/http.HandlerFunc.ServeHTTP
{SEP}
      10ms   k8s.io/kubernetes/vendor/k8s.io/apiserver/pkg/storage/cacher.(*cacheWatcher).process
{SEP}
      40ms   runtime.gcBgMarkWorker
{SEP}
      10ms   syscall.Syscall
             net/http.(*conn).serve
{SEP}
      50us   runtime.nanotime
"""


def test_samples_go_to_the_first_kind_on_their_stack_and_storage_tells_whose_objects() -> None:
    total, kinds = pprof_kinds(TRACES)
    spent = {kind: round(secs, 6) for kind, secs in kinds}
    assert round(total, 6) == 1.31005
    assert spent == {"GET: custom resources": 1.2, "garbage collection": 0.04,
                     "WATCH (events sent to watchers): custom resources": 0.03,
                     "WATCH (events sent to watchers)": 0.01, "PATCH: built-in kinds": 0.02,
                     "HTTP/1 connections": 0.01, "other": 0.00005}
    assert kinds[0][0] == "GET: custom resources"  # largest first
