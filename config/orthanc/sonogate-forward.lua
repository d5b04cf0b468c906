-- sonogate-forward.lua — Orthanc auto-routing of breast ultrasound to Sonogate.
--
-- When a study becomes stable (no new instance for "StableAge" seconds), every ultrasound
-- image of it that has not been forwarded yet is C-STOREd to the Sonogate modality. Sonogate
-- sends its SEG, SR and overlay back into the same study; those make the study stable again,
-- and this script must then do nothing, or every result would start another analysis.
--
-- Loop guards. The first three each keep Sonogate's results from being sent back to it; the
-- fourth keeps an image from being sent twice:
--   * only series whose Modality is in SONOGATE_FORWARD.Modalities (US) are considered: the
--     results are SEG, SR and OT (secondary capture) series;
--   * series made by Sonogate (Manufacturer "Sonogate") are never forwarded;
--   * only ultrasound SOP classes are forwarded (a US series may hold screenshots or reports,
--     which Sonogate would refuse, and a refused instance fails the whole C-STORE job), and only
--     in transfer syntaxes Sonogate reads (an MPEG-4 clip cannot go, nor be transcoded by Orthanc:
--     it would fail the job each time, and the study's other images be analysed again each time);
--   * each instance is forwarded once: after a successful C-STORE the instance gets the
--     metadata SonogateForwarded (persisted in Orthanc's index, so it survives restarts).
-- A new ultrasound image arriving later in the same series (or study) is not yet marked, so the
-- next stable event forwards it alone; Sonogate re-opens the study, adds the new image's results
-- and regenerates the earlier ones with the same UIDs (no duplicates in the study).
--
-- Requirements in orthanc.json (see config/orthanc/orthanc-sonogate.json):
--   "UserMetadata"    : { "SonogateForwarded" : 1024 }          (any free number 1024..65535)
--   "DicomModalities" : { "sonogate" : { "AET" : "SONOGATE", "Host" : "...", "Port" : 11112 } }
--   "LuaScripts"      : [ "/etc/orthanc/sonogate-forward.lua" ]
-- Tested with Orthanc 1.10.1 (Debian 12).
--
-- Why RestApiPost('/modalities/.../store') and not SendToModality(): in Orthanc 1.10 the Lua
-- SendToModality() accepts only instance IDs and reports success for a series ID it silently did
-- not send. The REST call sends a list of instances over one association, synchronously, and
-- returns nil when the C-STORE failed, so an instance is only marked once Sonogate has it. A
-- failed study is tried again at the next stable event of any study (Orthanc 1.10 has no Lua
-- timer: OnHeartBeat came later).

-- Settings. Each can be overridden without editing this file by a "SonogateForward" section in
-- orthanc.json, e.g. "SonogateForward" : { "Modality" : "sonogate", "BodyParts" : [] }.
SONOGATE_FORWARD = {
  -- key of the Sonogate entry in "DicomModalities"
  Modality = 'sonogate',
  -- series Modality values to forward
  Modalities = { 'US' },
  -- BodyPartExamined values to forward (case-insensitive); an empty list forwards any body part
  BodyParts = { 'BREAST' },
  -- many scanners leave BodyPartExamined empty: forward those series too?
  ForwardWhenBodyPartMissing = true,
  -- SOP classes Sonogate accepts: US Image Storage (and its retired version 1.2.840.10008.5.1.4.1.1.6)
  -- and US Multi-frame. The retired US Multi-frame class (...1.1.3) is refused by Sonogate, and a
  -- refused instance fails the whole C-STORE job, so it must not be listed here.
  SopClasses = {
    '1.2.840.10008.5.1.4.1.1.6.1', '1.2.840.10008.5.1.4.1.1.6',
    '1.2.840.10008.5.1.4.1.1.3.1',
  },
  -- transfer syntaxes Sonogate reads (src/dicom/transferSyntaxes.ts); an instance stored in another
  -- one is left here, with a log line
  TransferSyntaxes = {
    '1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2',
    '1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70',
    '1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91',
    '1.2.840.10008.1.2.5',
  },
  -- a study whose C-STORE keeps failing while other studies go through (an instance Sonogate
  -- refuses) is retried this many times, then left until it changes or is sent by hand
  MaxRetries = 3,
  -- Manufacturer written into every result object: such series are never forwarded
  ResultManufacturer = 'Sonogate',
  -- user metadata that marks a forwarded instance (declare it under "UserMetadata")
  Metadata = 'SonogateForwarded',
}

local function log(message)
  print('sonogate-forward: ' .. message)
end

do
  local ok, config = pcall(GetOrthancConfiguration)
  if ok and type(config) == 'table' then
    if type(config['SonogateForward']) == 'table' then
      for key, value in pairs(config['SonogateForward']) do
        if SONOGATE_FORWARD[key] == nil then
          log('unknown setting SonogateForward.' .. tostring(key) .. ' ignored')
        else
          SONOGATE_FORWARD[key] = value
        end
      end
    end
    local declared = type(config['UserMetadata']) == 'table' and config['UserMetadata'][SONOGATE_FORWARD.Metadata] ~= nil
    if not declared then
      log('WARNING: "UserMetadata" does not declare "' .. SONOGATE_FORWARD.Metadata .. '": forwarded instances '
        .. 'are remembered in memory only, and forwarded again after a restart of Orthanc')
    end
  end
end

-- Instances forwarded since Orthanc started: the guard that still holds if the metadata cannot be
-- written (undeclared, or a database error).
local forwardedInMemory = {}

local function trim(s)
  return (tostring(s or ''):gsub('\0', ''):gsub('^%s+', ''):gsub('%s+$', ''))
end

local function contains(list, value, ignoreCase)
  for _, v in pairs(list or {}) do
    if ignoreCase then
      if string.upper(trim(v)) == string.upper(value) then return true end
    elseif trim(v) == value then
      return true
    end
  end
  return false
end

-- Whether a series (its main DICOM tags, as /studies/{id}/series lists them) should go to Sonogate.
local function seriesWanted(tags)
  local s = SONOGATE_FORWARD
  if not contains(s.Modalities, string.upper(trim(tags['Modality'])), true) then
    return false, 'modality ' .. trim(tags['Modality'])
  end
  if string.upper(trim(tags['Manufacturer'])) == string.upper(s.ResultManufacturer) then
    return false, 'made by ' .. s.ResultManufacturer
  end
  local bodyPart = string.upper(trim(tags['BodyPartExamined']))
  if next(s.BodyParts or {}) ~= nil then
    if bodyPart == '' then
      if not s.ForwardWhenBodyPartMissing then return false, 'no body part' end
    elseif not contains(s.BodyParts, bodyPart, true) then
      return false, 'body part ' .. bodyPart
    end
  end
  return true, nil
end

-- The instance's metadata (SopClassUid, our marker...), {} when it cannot be read.
local function instanceMetadata(instanceId)
  local json = RestApiGet('/instances/' .. instanceId .. '/metadata?expand')
  if json == nil then return {} end
  return ParseJson(json)
end

local function sopClassOf(instanceId, metadata)
  local sopClass = trim(metadata['SopClassUid'])
  if sopClass == '' then
    -- databases written by old Orthanc versions may lack the SopClassUid metadata
    sopClass = trim(RestApiGet('/instances/' .. instanceId .. '/content/0008-0016'))
  end
  return sopClass
end

-- The instances of the study that Sonogate should get and has not got yet.
local function pendingInstances(studyId)
  local json = RestApiGet('/studies/' .. studyId .. '/series')
  if json == nil then return {} end
  local pending = {}
  for _, series in ipairs(ParseJson(json)) do
    local wanted = seriesWanted(series['MainDicomTags'] or {})
    if wanted then
      for _, instanceId in ipairs(series['Instances'] or {}) do
        if not forwardedInMemory[instanceId] then
          local metadata = instanceMetadata(instanceId)
          if metadata[SONOGATE_FORWARD.Metadata] == nil
            and contains(SONOGATE_FORWARD.SopClasses, sopClassOf(instanceId, metadata), false) then
            local syntax = trim(metadata['TransferSyntax'])
            if syntax ~= '' and not contains(SONOGATE_FORWARD.TransferSyntaxes, syntax, false) then
              log('instance ' .. instanceId .. ' not forwarded: transfer syntax ' .. syntax .. ' is not one Sonogate reads')
            else
              table.insert(pending, instanceId)
            end
          end
        end
      end
    end
  end
  return pending
end

local function markForwarded(instanceIds)
  local stamp = os.date('!%Y%m%dT%H%M%SZ')
  for _, instanceId in ipairs(instanceIds) do
    forwardedInMemory[instanceId] = true
    -- Orthanc 1.10 answers "" on success and nil on failure
    if RestApiPut('/instances/' .. instanceId .. '/metadata/' .. SONOGATE_FORWARD.Metadata, stamp) == nil then
      log('could not write metadata ' .. SONOGATE_FORWARD.Metadata .. ' on instance ' .. instanceId)
    end
  end
end

-- Studies whose C-STORE failed (Sonogate down or unreachable), with how often one failed while
-- Sonogate was answering: tried again at the next stable event of any study, once a forward has
-- succeeded. Kept in memory only: after a restart of Orthanc such a study goes when it next becomes
-- stable, or when sent by hand (docs/pacs-setup.md).
local retryStudies = {}

-- Forwards what the study has not yet sent; false when the C-STORE failed.
local function forwardStudy(studyId)
  local pending = pendingInstances(studyId)
  if #pending == 0 then
    retryStudies[studyId] = nil
    return true
  end
  log('study ' .. studyId .. ': forwarding ' .. #pending .. ' ultrasound instance(s) to modality "'
    .. SONOGATE_FORWARD.Modality .. '"')
  -- one synchronous C-STORE job over one association; Orthanc keeps each instance's transfer
  -- syntax when Sonogate accepts it (it accepts the compressed ones scanners send)
  local answer = RestApiPost('/modalities/' .. SONOGATE_FORWARD.Modality .. '/store',
    DumpJson({ Resources = pending, Synchronous = true }, true))
  if answer == nil then
    retryStudies[studyId] = retryStudies[studyId] or 0
    log('study ' .. studyId .. ': C-STORE to "' .. SONOGATE_FORWARD.Modality .. '" failed; will try again')
    return false
  end
  markForwarded(pending)
  retryStudies[studyId] = nil
  log('study ' .. studyId .. ': forwarded ' .. #pending .. ' instance(s)')
  return true
end

function OnStableStudy(studyId, tags, metadata)
  if not forwardStudy(studyId) then
    return
  end
  -- Sonogate answers again: send what failed before, every such study (one that fails now, while
  -- Sonogate answers, counts a retry; after MaxRetries it is given up, so it cannot hold up others)
  local earlier = {}
  for id in pairs(retryStudies) do
    if id ~= studyId then table.insert(earlier, id) end
  end
  for _, id in ipairs(earlier) do
    if not forwardStudy(id) then
      -- Sonogate gone again meanwhile? then it is not this study's fault: stop, count nothing
      if RestApiPost('/modalities/' .. SONOGATE_FORWARD.Modality .. '/echo', '{}') == nil then return end
      retryStudies[id] = retryStudies[id] + 1
      if retryStudies[id] >= SONOGATE_FORWARD.MaxRetries then
        retryStudies[id] = nil
        log('study ' .. id .. ': C-STORE failed ' .. SONOGATE_FORWARD.MaxRetries .. ' times while other studies went through; '
          .. 'no longer retried (send it by hand once the cause is found)')
      end
    end
  end
end
