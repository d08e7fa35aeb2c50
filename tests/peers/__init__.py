"""Real third-party peers the tests drive (GStreamer's RTSP server, ffmpeg as an RTP decoder)."""
