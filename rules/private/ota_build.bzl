"""ota_build: one device build (images + identity), the unit an OTA package goes from and to."""

load(":providers.bzl", "OtaBootImageInfo", "OtaBuildInfo", "OtaSystemImageInfo")

def _check_partition_name(ctx, name):
    if not name or name == "system" or name == "boot":
        fail("ota_build %s: partitions: '%s' is not allowed (boot and system have their own attributes)" % (ctx.label, name))
    for c in name.elems():
        if not (c.isalnum() or c in "_-"):
            fail("ota_build %s: partitions: name '%s' may hold only letters, digits, '_' and '-'" % (ctx.label, name))

def _ota_build_impl(ctx):
    if not ctx.attr.device:
        fail("ota_build %s: device is empty" % ctx.label)
    if not ctx.attr.fingerprint:
        fail("ota_build %s: fingerprint is empty" % ctx.label)
    if ctx.attr.timestamp <= 0:
        fail("ota_build %s: timestamp = %d: expected seconds since the epoch" % (ctx.label, ctx.attr.timestamp))
    boot = ctx.attr.boot[OtaBootImageInfo]
    partitions = {"boot": boot.image}
    for label, name in ctx.attr.partitions.items():
        _check_partition_name(ctx, name)
        if name in partitions:
            fail("ota_build %s: partitions: '%s' is given twice" % (ctx.label, name))
        images = label.files.to_list()
        if len(images) != 1:
            fail("ota_build %s: partitions: %s gives %d files, expected one image" % (ctx.label, label.label, len(images)))
        partitions[name] = images[0]
    build_json = ctx.actions.declare_file(ctx.label.name + ".build.json")
    ctx.actions.write(build_json, json.encode({
        "device": ctx.attr.device,
        "fingerprint": ctx.attr.fingerprint,
        "timestamp": ctx.attr.timestamp,
    }) + "\n")
    system = ctx.attr.system[OtaSystemImageInfo]
    outputs = [build_json, system.manifest] + [partitions[n] for n in sorted(partitions)]
    return [
        DefaultInfo(files = depset(outputs), runfiles = ctx.runfiles(outputs)),
        OtaBuildInfo(
            device = ctx.attr.device,
            fingerprint = ctx.attr.fingerprint,
            timestamp = ctx.attr.timestamp,
            build_json = build_json,
            boot = boot,
            system = system,
            partitions = partitions,
        ),
    ]

ota_build = rule(
    implementation = _ota_build_impl,
    doc = """One device build: identity (device, fingerprint, timestamp), the boot image, the
system image and any other raw partitions. Outputs `<name>.build.json`; provides OtaBuildInfo.""",
    attrs = {
        "device": attr.string(mandatory = True, doc = "Device name (ro.product.device)."),
        "fingerprint": attr.string(mandatory = True, doc = "Build fingerprint (ro.build.fingerprint)."),
        "timestamp": attr.int(
            mandatory = True,
            doc = "Build time, seconds since the epoch (ro.build.date.utc). A fixed number, " +
                  "never the current time: builds must be reproducible.",
        ),
        "boot": attr.label(mandatory = True, providers = [OtaBootImageInfo], doc = "An ota_boot_image."),
        "system": attr.label(mandatory = True, providers = [OtaSystemImageInfo], doc = "An ota_system_image."),
        "partitions": attr.label_keyed_string_dict(
            allow_files = [".img"],
            doc = "Other raw partition images: `{\":vendor.img\": \"vendor\"}` (image -> " +
                  "partition name). Each label must give one .img file; names hold letters, " +
                  "digits, `_` and `-`, and are neither boot nor system.",
        ),
    },
)
