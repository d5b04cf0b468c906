// dcmjs ships no type definitions; we use its data API (DicomMessage, DicomMetaDictionary,
// DicomDict) through this loose declaration and keep our own typed seams around it.
declare module 'dcmjs' {
  const dcmjs: any;
  export = dcmjs;
}
