output "volumes" {
  description = "Every volume: id, size, the instance it is attached to, the device and its mount point."
  value = {
    for name, volume in openstack_blockstorage_volume_v3.volume : name => {
      id          = volume.id
      size_gb     = volume.size
      instance_id = var.volumes[name].instance_id
      device      = openstack_compute_volume_attach_v2.volume[name].device
      mount_point = var.volumes[name].mount_point
    }
  }
}
