//! What a real GPU compiler makes of our kernels, without the GPU: Mesa's AMD Vulkan driver
//! (radv) offers a "null" device when `RADV_FORCE_FAMILY` names a GPU family, on which
//! pipelines can be created (nothing can run), and `VK_KHR_pipeline_executable_properties`
//! reports each pipeline's registers, spills, scratch, workgroup memory and waves per SIMD as
//! AMD's production compiler (ACO) made them.
//!
//! wgpu cannot open that device (its `request_device` fails: "Parent device is lost"), so this
//! goes through raw Vulkan (`ash`) with SPIR-V written by naga the way wgpu-hal writes it:
//! pipeline constants applied by `process_overrides`, workgroup memory zeroed natively, loops
//! bounded, and bounds checks as wgpu-hal writes them for a device with robust buffer access
//! but not robustness2 (`Restrict` on indices and buffers: the most checks wgpu adds, so the
//! most registers a kernel can need). `make gpu-report` prints the table; `tests/radv.rs`
//! holds the hardware shape to it.

use std::ffi::{c_char, CStr};

use ash::vk;

use crate::kernels::{joined, Kernel, KernelShape, SHADERS};

/// The families checked: GFX9 (Vega, 64-wide waves) and GFX10.3 (RDNA 2).
pub const FAMILIES: &[&str] = &["vega10", "navi21"];

/// Where Debian's `mesa-vulkan-drivers` puts radv's loader manifest.
const ICD: &str = "/usr/share/vulkan/icd.d/radeon_icd.x86_64.json";

/// One pipeline as the compiler built it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    pub kernel: Kernel,
    pub vgprs: u64,
    pub spilled_vgprs: u64,
    pub spilled_sgprs: u64,
    pub scratch_bytes: u64,
    pub lds_bytes: u64,
    /// Waves (subgroups) that fit on one SIMD at once: registers and workgroup memory allowing.
    pub waves_per_simd: u64,
}

impl Stats {
    /// One line of `make gpu-report`.
    pub fn line(&self, family: &str, shape: KernelShape) -> String {
        format!(
            "gpu-report family {family} shape {} kernel {} vgprs {} spilled_vgprs {} scratch_bytes {} waves_per_simd {} spilled_sgprs {} lds_bytes {}",
            shape.name(),
            self.kernel.name(),
            self.vgprs,
            self.spilled_vgprs,
            self.scratch_bytes,
            self.waves_per_simd,
            self.spilled_sgprs,
            self.lds_bytes
        )
    }

    /// What is wrong with this pipeline for a GPU, if anything: any spill or scratch, and for
    /// a product fewer than `min_waves` waves per SIMD.
    pub fn problem(&self, min_waves: u64) -> Option<String> {
        let mut wrong = Vec::new();
        if self.spilled_vgprs + self.spilled_sgprs > 0 {
            wrong.push(format!("{} VGPRs and {} SGPRs spilled", self.spilled_vgprs, self.spilled_sgprs));
        }
        if self.scratch_bytes > 0 {
            wrong.push(format!("{} bytes of scratch per wave", self.scratch_bytes));
        }
        if self.kernel.is_product() && self.waves_per_simd < min_waves {
            wrong.push(format!("{} waves per SIMD (at least {min_waves} wanted; {} VGPRs, {} bytes of workgroup memory)", self.waves_per_simd, self.vgprs, self.lds_bytes));
        }
        (!wrong.is_empty()).then(|| wrong.join(", "))
    }
}

/// Every pipeline of `shape`, compiled by radv for `family` (e.g. "vega10", "navi21").
///
/// The family is read by radv from the environment when a Vulkan instance enumerates its
/// devices, so this sets `RADV_FORCE_FAMILY` (and points the Vulkan loader at radv alone)
/// for the process: call it from one thread at a time.
pub fn compile(family: &str, shape: KernelShape) -> Result<Vec<Stats>, String> {
    if !std::path::Path::new(ICD).exists() {
        return Err(format!("radv's manifest {ICD} is missing: install Debian's mesa-vulkan-drivers (make setup does)"));
    }
    // SAFETY of set_var: documented above (one thread at a time); nothing else here reads them.
    std::env::set_var("VK_DRIVER_FILES", ICD);
    std::env::set_var("VK_ICD_FILENAMES", ICD);
    std::env::set_var("RADV_FORCE_FAMILY", family);
    // The disk cache would hand back a pipeline compiled for another family's key on old Mesas.
    std::env::set_var("MESA_SHADER_CACHE_DISABLE", "true");
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    // SAFETY: the loader is a plain C library; every handle made below is destroyed before return.
    let entry = unsafe { ash::Entry::load() }.map_err(|e| format!("no Vulkan loader ({e}): install Debian's libvulkan1 and mesa-vulkan-drivers"))?;
    let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
    let instance = unsafe { entry.create_instance(&vk::InstanceCreateInfo::default().application_info(&app), None) }
        .map_err(|e| format!("radv would not start for {family} ({e}): is RADV_FORCE_FAMILY's family known to this Mesa?"))?;
    let result = unsafe { compile_on(&instance, family, shape) };
    unsafe { instance.destroy_instance(None) };
    result
}

fn name_of(chars: &[c_char]) -> String {
    // SAFETY: Vulkan's fixed-size name arrays are NUL-terminated.
    unsafe { CStr::from_ptr(chars.as_ptr()) }.to_string_lossy().into_owned()
}

unsafe fn compile_on(instance: &ash::Instance, family: &str, shape: KernelShape) -> Result<Vec<Stats>, String> {
    let physical = instance
        .enumerate_physical_devices()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|&p| name_of(&instance.get_physical_device_properties(p).device_name).contains("RADV"))
        .ok_or_else(|| format!("radv offers no device for RADV_FORCE_FAMILY={family}: install Debian's mesa-vulkan-drivers (Mesa 22.3 or later)"))?;
    let extensions = instance.enumerate_device_extension_properties(physical).map_err(|e| e.to_string())?;
    let wanted = ash::khr::pipeline_executable_properties::NAME;
    if !extensions.iter().any(|e| name_of(&e.extension_name) == wanted.to_string_lossy()) {
        return Err(format!("radv for {family} lacks {wanted:?}"));
    }
    let queue = [vk::DeviceQueueCreateInfo::default().queue_family_index(0).queue_priorities(&[1.0])];
    let features = vk::PhysicalDeviceFeatures::default().robust_buffer_access(true);
    let mut executables = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default().pipeline_executable_info(true);
    let mut zeroing = vk::PhysicalDeviceVulkan13Features::default().shader_zero_initialize_workgroup_memory(true);
    let names = [wanted.as_ptr()];
    let info = vk::DeviceCreateInfo::default()
        .queue_create_infos(&queue)
        .enabled_extension_names(&names)
        .enabled_features(&features)
        .push_next(&mut executables)
        .push_next(&mut zeroing);
    let device = instance.create_device(physical, &info, None).map_err(|e| format!("radv's null device for {family}: {e}"))?;
    let result = compile_kernels(instance, &device, shape);
    device.destroy_device(None);
    result
}

/// The shared bind group layout of `Kernels::new`, as Vulkan sees it.
unsafe fn pipeline_layout(device: &ash::Device) -> Result<(vk::DescriptorSetLayout, vk::PipelineLayout), String> {
    let bindings: Vec<_> = (0..9)
        .map(|b| {
            let ty = if b < 2 { vk::DescriptorType::UNIFORM_BUFFER_DYNAMIC } else { vk::DescriptorType::STORAGE_BUFFER };
            vk::DescriptorSetLayoutBinding::default().binding(b).descriptor_type(ty).descriptor_count(1).stage_flags(vk::ShaderStageFlags::COMPUTE)
        })
        .collect();
    let set = device.create_descriptor_set_layout(&vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings), None).map_err(|e| e.to_string())?;
    let sets = [set];
    let layout = device.create_pipeline_layout(&vk::PipelineLayoutCreateInfo::default().set_layouts(&sets), None).map_err(|e| e.to_string())?;
    Ok((set, layout))
}

/// SPIR-V of one entry point with its pipeline constants, written as wgpu-hal writes it.
fn spirv(module: &naga::Module, info: &naga::valid::ModuleInfo, entry_point: &str, constants: &[(&str, f64)]) -> Result<Vec<u32>, String> {
    let mut values = naga::back::PipelineConstants::default();
    for &(name, value) in constants {
        values.insert(name.to_string(), value);
    }
    let stage = naga::ShaderStage::Compute;
    let (module, info) = naga::back::pipeline_constants::process_overrides(module, info, Some((stage, entry_point)), &values).map_err(|e| format!("{entry_point}: {e}"))?;
    let options = naga::back::spv::Options {
        lang_version: (1, 6),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::Restrict,
            buffer: naga::proc::BoundsCheckPolicy::Restrict,
            image_load: naga::proc::BoundsCheckPolicy::Restrict,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::Native,
        force_loop_bounding: true,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions { shader_stage: stage, entry_point: entry_point.to_string() };
    naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline)).map_err(|e| format!("{entry_point}: {e}"))
}

unsafe fn compile_kernels(instance: &ash::Instance, device: &ash::Device, shape: KernelShape) -> Result<Vec<Stats>, String> {
    let (set, layout) = pipeline_layout(device)?;
    let executables = ash::khr::pipeline_executable_properties::Device::new(instance, device);
    let mut modules = Vec::new();
    for &(file, _, _) in SHADERS {
        let source = joined(file);
        let module = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source))?;
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
            .validate(&module)
            .map_err(|e| e.emit_to_string(&source))?;
        modules.push((file, module, info));
    }
    let mut all = Vec::new();
    for kernel in shape.kernels() {
        let (file, entry_point) = kernel.source();
        let (_, module, info) = modules.iter().find(|m| m.0 == file).expect("every kernel's file is in SHADERS");
        let words = spirv(module, info, entry_point, &kernel.constants(shape, false))?;
        let shader = device.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None).map_err(|e| e.to_string())?;
        let name = std::ffi::CString::new(entry_point).expect("entry points have no NUL");
        let stage = vk::PipelineShaderStageCreateInfo::default().stage(vk::ShaderStageFlags::COMPUTE).module(shader).name(&name);
        let create = vk::ComputePipelineCreateInfo::default().stage(stage).layout(layout).flags(vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR);
        let pipeline = device
            .create_compute_pipelines(vk::PipelineCache::null(), &[create], None)
            .map_err(|(_, e)| format!("{entry_point}: radv could not compile it ({e})"))?[0];
        let stats = statistics(&executables, pipeline);
        device.destroy_pipeline(pipeline, None);
        device.destroy_shader_module(shader, None);
        let get = |name: &str| stats.iter().find(|s| s.0 == name).map(|s| s.1).ok_or_else(|| format!("radv reported no \"{name}\" for {entry_point}"));
        all.push(Stats {
            kernel,
            vgprs: get("VGPRs")?,
            spilled_vgprs: get("Spilled VGPRs")?,
            spilled_sgprs: get("Spilled SGPRs")?,
            scratch_bytes: get("Scratch size")?,
            lds_bytes: get("LDS size")?,
            waves_per_simd: get("Subgroups per SIMD")?,
        });
    }
    device.destroy_pipeline_layout(layout, None);
    device.destroy_descriptor_set_layout(set, None);
    Ok(all)
}

/// (name, value) of every unsigned statistic of a compute pipeline's one executable.
unsafe fn statistics(executables: &ash::khr::pipeline_executable_properties::Device, pipeline: vk::Pipeline) -> Vec<(String, u64)> {
    let info = vk::PipelineExecutableInfoKHR::default().pipeline(pipeline).executable_index(0);
    let stats = executables.get_pipeline_executable_statistics(&info).unwrap_or_default();
    stats
        .iter()
        .map(|s| {
            let value = match s.format {
                vk::PipelineExecutableStatisticFormatKHR::UINT64 => s.value.u64,
                vk::PipelineExecutableStatisticFormatKHR::INT64 => s.value.i64.max(0) as u64,
                vk::PipelineExecutableStatisticFormatKHR::BOOL32 => s.value.b32 as u64,
                _ => s.value.f64 as u64,
            };
            (name_of(&s.name), value)
        })
        .collect()
}
