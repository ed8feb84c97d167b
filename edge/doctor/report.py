"""`edge doctor`'s text output."""

from __future__ import annotations

from edge.doctor.fit import BundleReport, format_bytes
from edge.doctor.machine import MachineReport


def format_machine(machine: MachineReport) -> list[str]:
    lines = [f"python {machine.python} on {machine.platform}, {machine.cpu_count} CPUs"]
    lines.append(
        f"memory: {format_bytes(machine.ram_available_bytes)} available of {format_bytes(machine.ram_total_bytes)}"
    )
    installed = ", ".join(f"{k} {v}" for k, v in machine.packages.items() if v)
    lines.append(f"packages: {installed}")
    if machine.jetson_model:
        lines.append(f"jetson: {machine.jetson_model}")
    if machine.gpus:
        for gpu in machine.gpus:
            lines.append(
                f"gpu {gpu.index}: {gpu.name}, compute capability {gpu.compute_capability}, "
                f"free {format_bytes(gpu.memory_free_bytes)} of {format_bytes(gpu.memory_total_bytes)} "
                f"({gpu.source}{', unified memory' if gpu.unified_memory else ''})"
            )
        lines.append(f"cuda driver: {machine.cuda_driver_version}")
    else:
        lines.append(f"gpu: none ({machine.gpu_probe})")
    lines.append(
        f"tensorrt: {machine.tensorrt_version or 'unavailable (' + str(machine.tensorrt_error) + ')'}"
    )
    lines.append(
        "onnxruntime providers: "
        + (", ".join(machine.onnxruntime_providers) or f"unavailable ({machine.onnxruntime_error})")
    )
    offload = machine.llama_gpu_offload
    lines.append(
        f"llama.cpp gpu offload: {offload if offload is not None else 'unavailable (' + str(machine.llama_error) + ')'}"
    )
    cams = ", ".join(f"{c.path}{'' if c.accessible else ' (no access)'}" for c in machine.cameras)
    lines.append(f"cameras: {cams or 'none found (/dev/video*)'}")
    return lines


def format_bundle(report: BundleReport) -> list[str]:
    lines = [f"bundle {report.path}: {'CAN run here' if report.runnable else 'CANNOT run here'}"]
    for check in report.checks:
        lines.append(f"  [{'ok' if check.ok else 'no'}] {check.name}: {check.detail}")
    if report.vision_choice:
        lines.append(f"  vision would use: {report.vision_choice}")
    if report.decoder_choice:
        lines.append(f"  decoder would use: {report.decoder_choice}")
    for step in report.memory.get("measured", []):
        lines.append(
            f"  measured {step['step']}: {step['seconds']:.2f} s, RSS {format_bytes(step.get('VmRSS'))} "
            f"(anon {format_bytes(step.get('RssAnon'))}, files {format_bytes(step.get('RssFile'))}), "
            f"peak {format_bytes(step.get('VmHWM'))}"
        )
    for reason in report.reasons:
        lines.append(f"  reason: {reason}")
    return lines
